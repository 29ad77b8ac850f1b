file(REMOVE_RECURSE
  "../herald"
  "../herald.pdb"
  "CMakeFiles/herald.dir/cmd_compliance.c.o"
  "CMakeFiles/herald.dir/cmd_compliance.c.o.d"
  "CMakeFiles/herald.dir/cmd_db.c.o"
  "CMakeFiles/herald.dir/cmd_db.c.o.d"
  "CMakeFiles/herald.dir/cmd_phone.c.o"
  "CMakeFiles/herald.dir/cmd_phone.c.o.d"
  "CMakeFiles/herald.dir/cmd_sms.c.o"
  "CMakeFiles/herald.dir/cmd_sms.c.o.d"
  "CMakeFiles/herald.dir/main.c.o"
  "CMakeFiles/herald.dir/main.c.o.d"
)

# Per-language clean rules from dependency scanning.
foreach(lang C)
  include(CMakeFiles/herald.dir/cmake_clean_${lang}.cmake OPTIONAL)
endforeach()
