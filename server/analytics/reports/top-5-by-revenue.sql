-- The products with the highest revenue in the period (ties broken by product_id), with
-- their hierarchy and share of the period's total revenue.
-- @param limit integer default=5 min=1 max=100: how many products to list
WITH lines AS (
    SELECT s.*
    FROM sales_in_period($start_date, $end_date) s
),
by_product AS (
    SELECT product_id,
           SUM(net_price)::DECIMAL(38, 2) AS net_amount,
           SUM(quantity)::BIGINT AS quantity,
           COUNT(*)::BIGINT AS line_count
    FROM lines
    GROUP BY product_id
),
ranked AS (
    SELECT row_number() OVER (ORDER BY b.net_amount DESC, b.product_id) AS rank,
           b.product_id, p.product_name, p.supplier, p.brand, p.family,
           b.net_amount, b.quantity, b.line_count,
           (b.net_amount / sum(b.net_amount) OVER ())::DOUBLE AS share_of_total
    FROM by_product b
    JOIN product p USING (product_id)
)
SELECT *
FROM ranked
WHERE rank <= $limit
ORDER BY rank
