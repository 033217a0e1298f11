// The smallest useful script: the value of the last expression is the result.
// `input` is the request's "input" (null when none was given).
const name = (input && input.name) || "world";
({ greeting: `hello, ${name}`, length: name.length });
