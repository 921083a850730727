"""Sources of labelled photos other than a crawl: CSV files of a product feed or a benchmark."""
