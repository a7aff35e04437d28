// userswitchctl: the command-line tool of userswitch. See Commands.swift; docs/usage.md.
UserSwitchCtl.main()
