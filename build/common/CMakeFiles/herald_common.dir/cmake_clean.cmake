file(REMOVE_RECURSE
  "CMakeFiles/herald_common.dir/buf.c.o"
  "CMakeFiles/herald_common.dir/buf.c.o.d"
  "CMakeFiles/herald_common.dir/env.c.o"
  "CMakeFiles/herald_common.dir/env.c.o.d"
  "CMakeFiles/herald_common.dir/log.c.o"
  "CMakeFiles/herald_common.dir/log.c.o.d"
  "CMakeFiles/herald_common.dir/xalloc.c.o"
  "CMakeFiles/herald_common.dir/xalloc.c.o.d"
  "libherald_common.a"
  "libherald_common.pdb"
)

# Per-language clean rules from dependency scanning.
foreach(lang C)
  include(CMakeFiles/herald_common.dir/cmake_clean_${lang}.cmake OPTIONAL)
endforeach()
