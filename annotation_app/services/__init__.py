"""The service layer: plain functions taking a ``Session``; the only code that reads or writes the database."""
