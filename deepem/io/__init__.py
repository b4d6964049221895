"""Reading and writing micrographs, coordinate files and arrays."""
