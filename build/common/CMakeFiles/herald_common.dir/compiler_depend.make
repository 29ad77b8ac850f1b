# Empty compiler generated dependencies file for herald_common.
# This may be replaced when dependencies are built.
