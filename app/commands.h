/*
 * The herald CLI's command handlers. Each takes argv from the command word on
 * (argv[0] is e.g. "db") and returns the process exit status:
 * 0 success, 1 failure, 2 bad usage, with a one-line reason on stderr.
 */
#ifndef HERALD_APP_COMMANDS_H
#define HERALD_APP_COMMANDS_H

#define EXIT_USAGE 2

int cmd_db(int argc, char **argv);
int cmd_phone(int argc, char **argv);
int cmd_sms(int argc, char **argv);
int cmd_compliance(int argc, char **argv);
int cmd_campaign(int argc, char **argv);
int cmd_run_due(int argc, char **argv);
int cmd_rules(int argc, char **argv);
int cmd_inbox(int argc, char **argv);
int cmd_org(int argc, char **argv);
int cmd_suppression(int argc, char **argv);
int cmd_serve(int argc, char **argv);

#endif
