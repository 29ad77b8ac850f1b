file(REMOVE_RECURSE
  "libherald_compliance.a"
)
