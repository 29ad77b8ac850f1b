/* Helpers shared by the C integration tests: a fresh database per test program. */
#ifndef HERALD_TESTS_ITEST_H
#define HERALD_TESTS_ITEST_H

/*
 * Creates a new empty database in the fixture cluster (HERALD_TEST_PG_STATE) named
 * after prefix plus the pid and returns its conninfo (static storage). Aborts the
 * test program with a message if the fixture is missing.
 */
const char *itest_fresh_db(const char *prefix);

#endif
