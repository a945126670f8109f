-- Every node of the supplier > brand > family hierarchy with its revenue and its share of
-- its parent's revenue (suppliers of the total, brands of their supplier, families of their
-- brand): GROUPING SETS for the nodes, a window over siblings for the parent's amount.
WITH lines AS (
    SELECT s.quantity, s.net_price, p.supplier, p.brand, p.family
    FROM sales_in_period($start_date, $end_date) s
    JOIN product p USING (product_id)
),
nodes AS (
    SELECT supplier, brand, family,
           GROUPING_ID(supplier, brand, family)::INTEGER AS level,
           SUM(net_price)::DECIMAL(38, 2) AS net_amount,
           SUM(quantity)::BIGINT AS quantity
    FROM lines
    GROUP BY GROUPING SETS ((supplier, brand, family), (supplier, brand), (supplier), ())
)
SELECT level,
       CASE level WHEN 0 THEN 'family' WHEN 1 THEN 'brand' WHEN 3 THEN 'supplier'
           ELSE 'total' END AS node,
       supplier, brand, family, net_amount, quantity,
       CASE WHEN level < 7 THEN sum(net_amount) OVER siblings END AS parent_net_amount,
       CASE WHEN level < 7 THEN (net_amount / nullif(sum(net_amount) OVER siblings, 0))::DOUBLE
       END AS share_of_parent
FROM nodes
WINDOW siblings AS (
    PARTITION BY level,
                 CASE WHEN level IN (0, 1) THEN supplier END,
                 CASE WHEN level = 0 THEN brand END
)
ORDER BY supplier NULLS FIRST, brand NULLS FIRST, family NULLS FIRST
