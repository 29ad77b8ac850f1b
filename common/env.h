/* Process environment helpers: the optional .env file of the working directory. */
#ifndef HERALD_COMMON_ENV_H
#define HERALD_COMMON_ENV_H

/*
 * Reads KEY=VALUE lines from path into the environment, never overriding a
 * variable that is already set (the real environment wins). Accepts comments (#),
 * blank lines, an optional "export " prefix and single or double quotes around
 * the value. Returns the number of variables set, 0 when the file does not exist,
 * or -1 with *err_line set to the first malformed line.
 */
int env_load_dotenv(const char *path, int *err_line);

#endif
