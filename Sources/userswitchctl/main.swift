// userswitchctl: the command-line tool of userswitch. See Commands.swift; docs/usage.md.
//
// `--socket PATH` is accepted before the subcommand too (`userswitchctl --socket P show`), as
// users of ovs-vsctl and brctl-style tools write it: argument-parser only knows it as an option
// of each subcommand, so move it behind the subcommand's name before parsing.
var arguments = Array(CommandLine.arguments.dropFirst())
if let i = arguments.firstIndex(where: { $0 == "--socket" || $0.hasPrefix("--socket=") }),
   let sub = arguments.firstIndex(where: { !$0.hasPrefix("-") }), i < sub {
    let takesValue = arguments[i] == "--socket"
    let end = takesValue ? min(i + 2, arguments.count) : i + 1
    let option = Array(arguments[i..<end])
    arguments.removeSubrange(i..<end)
    if let s = arguments.firstIndex(where: { !$0.hasPrefix("-") }) {
        arguments.insert(contentsOf: option, at: s + 1)
    } else {
        arguments.append(contentsOf: option)
    }
}
UserSwitchCtl.main(arguments)
