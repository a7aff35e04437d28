print("userswitchctl: not yet")
