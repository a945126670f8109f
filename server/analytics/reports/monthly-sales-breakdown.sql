-- Revenue per month broken down three ways: by supplier, by brand (within its supplier)
-- and by customer region, one GROUPING SETS query; `dimension` names the breakdown and
-- `share_of_month` is the row's share of that month's revenue.
WITH lines AS (
    SELECT s.invoice_date, s.quantity, s.net_price, p.supplier, p.brand, c.region,
           s.month
    FROM sales_in_period($start_date, $end_date) s
    JOIN product p USING (product_id)
    JOIN customer c USING (customer_id)
),
grouped AS (
    SELECT month,
           CASE GROUPING_ID(supplier, brand, region)
               WHEN 3 THEN 'supplier' WHEN 1 THEN 'brand' ELSE 'region'
           END AS dimension,
           supplier, brand, region,
           SUM(net_price)::DECIMAL(38, 2) AS net_amount,
           SUM(quantity)::BIGINT AS quantity,
           COUNT(*)::BIGINT AS line_count
    FROM lines
    GROUP BY GROUPING SETS ((month, supplier), (month, supplier, brand), (month, region))
)
SELECT month, dimension, supplier, brand, region, net_amount, quantity, line_count,
       (net_amount / sum(net_amount) OVER (PARTITION BY month, dimension))::DOUBLE
           AS share_of_month
FROM grouped
ORDER BY month, dimension, supplier, brand, region
