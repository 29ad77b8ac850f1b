
# Consider dependencies only in project.
set(CMAKE_DEPENDS_IN_PROJECT_ONLY OFF)

# The set of languages for which implicit dependencies are needed:
set(CMAKE_DEPENDS_LANGUAGES
  )

# The set of dependency files which are needed:
set(CMAKE_DEPENDS_DEPENDENCY_FILES
  "/work/main/app/cmd_compliance.c" "app/CMakeFiles/herald.dir/cmd_compliance.c.o" "gcc" "app/CMakeFiles/herald.dir/cmd_compliance.c.o.d"
  "/work/main/app/cmd_db.c" "app/CMakeFiles/herald.dir/cmd_db.c.o" "gcc" "app/CMakeFiles/herald.dir/cmd_db.c.o.d"
  "/work/main/app/cmd_phone.c" "app/CMakeFiles/herald.dir/cmd_phone.c.o" "gcc" "app/CMakeFiles/herald.dir/cmd_phone.c.o.d"
  "/work/main/app/cmd_sms.c" "app/CMakeFiles/herald.dir/cmd_sms.c.o" "gcc" "app/CMakeFiles/herald.dir/cmd_sms.c.o.d"
  "/work/main/app/main.c" "app/CMakeFiles/herald.dir/main.c.o" "gcc" "app/CMakeFiles/herald.dir/main.c.o.d"
  )

# Targets to which this target links.
set(CMAKE_TARGET_LINKED_INFO_FILES
  "/work/main/build/storage/CMakeFiles/herald_storage.dir/DependInfo.cmake"
  "/work/main/build/compliance/CMakeFiles/herald_compliance.dir/DependInfo.cmake"
  "/work/main/build/common/CMakeFiles/herald_common.dir/DependInfo.cmake"
  )

# Fortran module output directory.
set(CMAKE_Fortran_TARGET_MODULE_DIR "")
