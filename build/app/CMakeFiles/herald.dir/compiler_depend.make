# Empty compiler generated dependencies file for herald.
# This may be replaced when dependencies are built.
