-- Sales per month: revenue, quantity, invoice lines, distinct customers and the average
-- line amount, the revenue change from the previous month, and a total row (month null).
WITH lines AS (
    SELECT s.*
    FROM sales_in_period($start_date, $end_date) s
),
monthly AS (
    SELECT month,
           SUM(net_price)::DECIMAL(38, 2) AS net_amount,
           SUM(quantity)::BIGINT AS quantity,
           COUNT(*)::BIGINT AS line_count,
           COUNT(DISTINCT customer_id)::BIGINT AS customers
    FROM lines
    GROUP BY GROUPING SETS ((month), ())
)
SELECT month,
       net_amount,
       quantity,
       line_count,
       customers,
       round(net_amount / nullif(line_count, 0), 2)::DOUBLE AS avg_line_amount,
       net_amount - lag(net_amount) OVER (PARTITION BY month IS NULL ORDER BY month)
           AS change_from_previous
FROM monthly
ORDER BY month NULLS LAST
