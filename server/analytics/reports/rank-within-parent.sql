-- Each supplier ranked within the total, each brand within its supplier and each family
-- within its brand, by revenue (RANK: equal revenue, equal rank), with the number of
-- siblings.
WITH lines AS (
    SELECT s.net_price, p.supplier, p.brand, p.family
    FROM sales_in_period($start_date, $end_date) s
    JOIN product p USING (product_id)
),
nodes AS (
    SELECT supplier, brand, family,
           GROUPING_ID(supplier, brand, family)::INTEGER AS level,
           SUM(net_price)::DECIMAL(38, 2) AS net_amount
    FROM lines
    GROUP BY GROUPING SETS ((supplier, brand, family), (supplier, brand), (supplier))
)
SELECT level,
       CASE level WHEN 0 THEN 'family' WHEN 1 THEN 'brand' ELSE 'supplier' END AS node,
       supplier, brand, family, net_amount,
       rank() OVER (siblings ORDER BY net_amount DESC) AS rank,
       count(*) OVER siblings AS siblings
FROM nodes
WINDOW siblings AS (
    PARTITION BY level,
                 CASE WHEN level IN (0, 1) THEN supplier END,
                 CASE WHEN level = 0 THEN brand END
)
ORDER BY level DESC, supplier, brand, rank, family
