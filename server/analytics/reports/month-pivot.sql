-- Revenue of each brand by calendar month: one row per supplier, brand and year, the
-- months jan..dec as columns (PIVOT; 0 where nothing was sold) and the row total.
WITH lines AS (
    SELECT s.net_price, p.supplier, p.brand,
           year(s.invoice_date)::INTEGER AS year,
           strftime(s.invoice_date, '%m') AS month_of_year
    FROM sales_in_period($start_date, $end_date) s
    JOIN product p USING (product_id)
),
pivoted AS (
    PIVOT lines
    ON month_of_year IN (
        '01' AS jan, '02' AS feb, '03' AS mar, '04' AS apr, '05' AS may, '06' AS jun,
        '07' AS jul, '08' AS aug, '09' AS sep, '10' AS oct, '11' AS nov, '12' AS dec
    )
    USING SUM(net_price)::DECIMAL(38, 2)
    GROUP BY supplier, brand, year
),
totals AS (
    SELECT supplier, brand, year, SUM(net_price)::DECIMAL(38, 2) AS total
    FROM lines
    GROUP BY supplier, brand, year
)
SELECT p.supplier, p.brand, p.year,
       coalesce(jan, 0) AS jan, coalesce(feb, 0) AS feb, coalesce(mar, 0) AS mar,
       coalesce(apr, 0) AS apr, coalesce(may, 0) AS may, coalesce(jun, 0) AS jun,
       coalesce(jul, 0) AS jul, coalesce(aug, 0) AS aug, coalesce(sep, 0) AS sep,
       coalesce(oct, 0) AS oct, coalesce(nov, 0) AS nov, coalesce(dec, 0) AS dec,
       t.total
FROM pivoted p
JOIN totals t USING (supplier, brand, year)
ORDER BY p.supplier, p.brand, p.year
