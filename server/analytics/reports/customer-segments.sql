-- Customers by segment and by region: a ROLLUP per dimension joined from sales, customers
-- and products, combined with UNION (the two identical grand-total rows become one, with
-- dimension 'total'); share_of_total is the row's share of all revenue.
WITH lines AS (
    SELECT s.customer_id, s.quantity, s.net_price, c.segment, c.region, p.brand
    FROM sales_in_period($start_date, $end_date) s
    JOIN customer c USING (customer_id)
    JOIN product p USING (product_id)
),
segments AS (
    SELECT CASE WHEN GROUPING(segment) = 1 THEN 'total' ELSE 'segment' END AS dimension,
           segment AS member,
           COUNT(DISTINCT customer_id)::BIGINT AS customers,
           COUNT(DISTINCT brand)::BIGINT AS brands,
           COUNT(*)::BIGINT AS line_count,
           SUM(quantity)::BIGINT AS quantity,
           SUM(net_price)::DECIMAL(38, 2) AS net_amount
    FROM lines
    GROUP BY ROLLUP (segment)
),
regions AS (
    SELECT CASE WHEN GROUPING(region) = 1 THEN 'total' ELSE 'region' END AS dimension,
           region AS member,
           COUNT(DISTINCT customer_id)::BIGINT AS customers,
           COUNT(DISTINCT brand)::BIGINT AS brands,
           COUNT(*)::BIGINT AS line_count,
           SUM(quantity)::BIGINT AS quantity,
           SUM(net_price)::DECIMAL(38, 2) AS net_amount
    FROM lines
    GROUP BY ROLLUP (region)
),
combined AS (
    SELECT * FROM segments
    UNION
    SELECT * FROM regions
)
SELECT dimension, member, customers, brands, line_count, quantity, net_amount,
       (net_amount / nullif(max(net_amount) FILTER (WHERE dimension = 'total') OVER (), 0))::DOUBLE
           AS share_of_total
FROM combined
ORDER BY CASE dimension WHEN 'segment' THEN 1 WHEN 'region' THEN 2 ELSE 3 END, member
