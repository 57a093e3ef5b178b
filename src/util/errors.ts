// An error whose message is one sentence meant for a person (a bad flag, a
// missing namespace, a lab that is not up), as opposed to a bug. The CLI
// prints such a message as `silkworm: <message>` with exit code 1 and no
// stack trace; each room that raises them has its own subclass (LabError in
// src/lab, CliError in src/cli is this class under the CLI's name).
export class UserError extends Error {}
