"""The status model: rows and the clock in, a document and the API's answer out. Pure: no I/O driver is imported here."""
