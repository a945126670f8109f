-- Supplier measures per month as rows (UNPIVOT): one row per supplier, month and measure
-- (customers, line_count, net_amount, quantity) with its amount.
WITH lines AS (
    SELECT s.customer_id, s.quantity, s.net_price, p.supplier,
           s.month
    FROM sales_in_period($start_date, $end_date) s
    JOIN product p USING (product_id)
),
measures AS (
    SELECT supplier, month,
           SUM(quantity)::DECIMAL(38, 2) AS quantity,
           SUM(net_price)::DECIMAL(38, 2) AS net_amount,
           COUNT(*)::DECIMAL(38, 2) AS line_count,
           COUNT(DISTINCT customer_id)::DECIMAL(38, 2) AS customers
    FROM lines
    GROUP BY supplier, month
),
unpivoted AS (
    UNPIVOT measures
    ON quantity, net_amount, line_count, customers
    INTO NAME measure VALUE amount
)
SELECT supplier, month, measure, amount
FROM unpivoted
ORDER BY supplier, month, measure
