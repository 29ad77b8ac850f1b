# Empty dependencies file for unit_common_test_common.
# This may be replaced when dependencies are built.
