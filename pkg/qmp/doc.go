// Package qmp is a QEMU Machine Protocol server that QMP clients cannot
// tell apart from QEMU's own monitor. It implements the wire protocol only:
// greeting, capabilities negotiation, request checks, argument validation
// against declared schemas, replies, errors and events. The commands
// themselves are registered by the caller.
//
// What is reproduced from QEMU (qobject/json-*.c, qobject/qdict.c,
// qapi/qobject-input-visitor.c, qapi/qmp-dispatch.c, monitor/qmp*.c) and
// checked against QEMU 7.2:
//
//   - Input is a JSON stream, never split on lines: QEMU's lexer (with its
//     single-quote and \' extensions), its streamer (a message ends when
//     braces and brackets balance) and its parser, with their limits
//     (64 MiB of tokens, 2,097,152 tokens, nesting 1024) and their error
//     texts. After a lexical error ("stray '...'") the lexer skips input up
//     to the next structural character, control character or byte
//     0xFE/0xFF, and the streamer drops the message, as QEMU does.
//   - Output is QEMU's compact JSON writer: `": "` and `", "`, ASCII only
//     (\uXXXX escapes with upper-case hex), numbers as %.17g, lines ending
//     "\r\n", and object members in the order QEMU's QDict hash table
//     yields them. Handler results are re-encoded the same way, so a Go
//     struct whose fields follow the QAPI schema order comes out exactly
//     as QEMU would print it.
//   - The "id" of a request is echoed as QEMU echoes it: re-serialised
//     from the parsed value (so 1.0 comes back as 1 and 'x' as "x").
//   - The order of request checks, of argument checks (schema order, then
//     unexpected members) and the member paths in messages
//     ("capabilities[0].state"), so the same fault is reported with the
//     same words.
//
// Deliberate differences from QEMU:
//
//   - No out-of-band execution: the greeting offers no capabilities
//     ("capabilities": []), and qmp_capabilities with "enable": ["oob"]
//     fails with QEMU's "Capability oob not available"; "exec-oob" is an
//     unexpected member, as in QEMU without OOB.
//   - Numbers beyond the double range, which QEMU echoes as the invalid
//     JSON "inf", are written as ±1.7976931348623157e+308.
//   - Which of several unexpected arguments is named follows GLib's hash
//     table order exactly for objects of fewer than 8 members; beyond that
//     it is approximated (see ghash.go).
//   - Several clients may use one socket at once (QEMU serves one client
//     per chardev), and a client that does not read its replies and
//     events is disconnected instead of stalling the server.
//   - query-commands is built in and lists exactly the registered commands,
//     newest first as QEMU does.
package qmp
