-- The version read (?version=budget) against actual, by supplier and quarter: net amount
-- in each, variance_amount = version - actual and share_variance = variance / actual (null
-- where actual is 0), with each supplier's total and the grand total (GROUPING SETS).
-- Run for actual itself, every variance is 0. The cell-by-cell variance is GET /compare.
WITH shown AS (
    SELECT p.supplier, strftime(s.invoice_date, '%Y') || '-Q' || quarter(s.invoice_date) AS quarter,
           SUM(s.net_price) AS amount
    FROM sales_in_period($start_date, $end_date) s
    JOIN product p USING (product_id)
    GROUP BY ALL
),
actual AS (
    SELECT p.supplier, strftime(s.invoice_date, '%Y') || '-Q' || quarter(s.invoice_date) AS quarter,
           SUM(s.net_price) AS amount
    FROM main.sales s
    JOIN product p USING (product_id)
    WHERE s.invoice_date >= coalesce($start_date::DATE, DATE '0001-01-01')
      AND s.invoice_date <= coalesce($end_date::DATE, DATE '9999-12-31')
    GROUP BY ALL
),
joined AS (
    SELECT coalesce(v.supplier, a.supplier) AS supplier,
           coalesce(v.quarter, a.quarter) AS quarter,
           coalesce(v.amount, 0) AS version_amount,
           coalesce(a.amount, 0) AS actual_amount
    FROM shown v
    FULL JOIN actual a ON v.supplier IS NOT DISTINCT FROM a.supplier AND v.quarter = a.quarter
),
totals AS (
    SELECT supplier, quarter,
           SUM(version_amount)::DECIMAL(38, 2) AS version_amount,
           SUM(actual_amount)::DECIMAL(38, 2) AS actual_amount,
           GROUPING(supplier, quarter) AS grouping_id
    FROM joined
    GROUP BY GROUPING SETS ((supplier, quarter), (supplier), ())
)
SELECT supplier, quarter, version_amount, actual_amount,
       version_amount - actual_amount AS variance_amount,
       ((version_amount - actual_amount) / nullif(actual_amount, 0))::DOUBLE AS share_variance
FROM totals
ORDER BY grouping_id = 3, supplier NULLS LAST, grouping_id, quarter
