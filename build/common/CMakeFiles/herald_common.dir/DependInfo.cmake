
# Consider dependencies only in project.
set(CMAKE_DEPENDS_IN_PROJECT_ONLY OFF)

# The set of languages for which implicit dependencies are needed:
set(CMAKE_DEPENDS_LANGUAGES
  )

# The set of dependency files which are needed:
set(CMAKE_DEPENDS_DEPENDENCY_FILES
  "/work/main/common/buf.c" "common/CMakeFiles/herald_common.dir/buf.c.o" "gcc" "common/CMakeFiles/herald_common.dir/buf.c.o.d"
  "/work/main/common/env.c" "common/CMakeFiles/herald_common.dir/env.c.o" "gcc" "common/CMakeFiles/herald_common.dir/env.c.o.d"
  "/work/main/common/log.c" "common/CMakeFiles/herald_common.dir/log.c.o" "gcc" "common/CMakeFiles/herald_common.dir/log.c.o.d"
  "/work/main/common/xalloc.c" "common/CMakeFiles/herald_common.dir/xalloc.c.o" "gcc" "common/CMakeFiles/herald_common.dir/xalloc.c.o.d"
  )

# Targets to which this target links.
set(CMAKE_TARGET_LINKED_INFO_FILES
  )

# Fortran module output directory.
set(CMAKE_Fortran_TARGET_MODULE_DIR "")
