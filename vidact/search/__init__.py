"""Architecture search: X3D progressive expansion."""
