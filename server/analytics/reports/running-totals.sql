-- Revenue and quantity per brand and month with their running (cumulative) totals over
-- the months of the period, per brand.
WITH lines AS (
    SELECT s.quantity, s.net_price, p.supplier, p.brand,
           s.month
    FROM sales_in_period($start_date, $end_date) s
    JOIN product p USING (product_id)
),
monthly AS (
    SELECT supplier, brand, month,
           SUM(net_price)::DECIMAL(38, 2) AS net_amount,
           SUM(quantity)::BIGINT AS quantity
    FROM lines
    GROUP BY supplier, brand, month
)
SELECT supplier, brand, month,
       net_amount,
       sum(net_amount) OVER brand_months AS running_net_amount,
       quantity,
       sum(quantity) OVER brand_months AS running_quantity
FROM monthly
WINDOW brand_months AS (
    PARTITION BY supplier, brand ORDER BY month ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW
)
ORDER BY supplier, brand, month
