"""Pure protocol layer: catalog, validation, error codes and JSON encoding. No I/O."""
