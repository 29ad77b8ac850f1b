# Empty dependencies file for herald_compliance.
# This may be replaced when dependencies are built.
