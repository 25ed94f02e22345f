"""Pure billing rules (no I/O, no clocks): imported by the workflow, activities and API."""
