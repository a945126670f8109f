-- The summary as a plain GROUPING SETS query over the base tables. The materialized
-- table must equal this view at every moment (`ducksheet check`).
CREATE OR REPLACE VIEW sales_summary_fresh AS
SELECT
    p.supplier,
    p.brand,
    p.family,
    strftime(s.invoice_date, '%Y-%m') AS month,
    GROUPING_ID(p.supplier, p.brand, p.family)::INTEGER AS level,
    SUM(s.quantity)::BIGINT AS quantity,
    SUM(s.net_price)::DECIMAL(18, 2) AS net_amount,
    COUNT(*)::BIGINT AS line_count
FROM sales s
JOIN product p USING (product_id)
GROUP BY GROUPING SETS (
    (p.supplier, p.brand, p.family, month), (p.supplier, p.brand, p.family),
    (p.supplier, p.brand, month), (p.supplier, p.brand),
    (p.supplier, month), (p.supplier),
    (month), ()
);

-- Measures as rows: one row per summary cell and measure.
CREATE OR REPLACE VIEW sales_summary_measures AS
UNPIVOT (
    SELECT supplier, brand, family, month, level,
           quantity::DECIMAL(18, 2) AS quantity, net_amount
    FROM sales_summary_by_product_family
)
ON quantity, net_amount
INTO NAME measure VALUE amount;

-- The sales lines of a period (NULL bounds: open), with their month: the common start
-- of the report queries (server/analytics/reports/).
CREATE OR REPLACE MACRO sales_in_period(start_date, end_date) AS TABLE
SELECT s.*, strftime(s.invoice_date, '%Y-%m') AS month
FROM sales s
WHERE s.invoice_date >= coalesce(start_date::DATE, DATE '0001-01-01')
  AND s.invoice_date <= coalesce(end_date::DATE, DATE '9999-12-31');
