# CMake generated Testfile for 
# Source directory: /work/main/tests
# Build directory: /work/main/build/tests
# 
# This file includes the relevant testing commands required for 
# testing this directory and lists subdirectories to be tested as well.
add_test(unit_common_test_common "/work/main/build/tests/unit_common_test_common")
set_tests_properties(unit_common_test_common PROPERTIES  LABELS "unit" TIMEOUT "120" _BACKTRACE_TRIPLES "/work/main/tests/CMakeLists.txt;16;add_test;/work/main/tests/CMakeLists.txt;21;herald_unit_tests;/work/main/tests/CMakeLists.txt;0;")
add_test(pg_start "/work/main/tests/integration/pgtmp.sh" "start" "/work/main/build/testpg.state")
set_tests_properties(pg_start PROPERTIES  FIXTURES_SETUP "pg" LABELS "integration" TIMEOUT "60" _BACKTRACE_TRIPLES "/work/main/tests/CMakeLists.txt;26;add_test;/work/main/tests/CMakeLists.txt;0;")
add_test(pg_stop "/work/main/tests/integration/pgtmp.sh" "stop" "/work/main/build/testpg.state")
set_tests_properties(pg_stop PROPERTIES  FIXTURES_CLEANUP "pg" LABELS "integration" TIMEOUT "60" _BACKTRACE_TRIPLES "/work/main/tests/CMakeLists.txt;27;add_test;/work/main/tests/CMakeLists.txt;0;")
