# herald_embed(OUT_C SYMBOL FILE...) generates a C file that defines
#   const herald_embedded_t SYMBOL[] = {{"name", data, len}, ..., {NULL, NULL, 0}};
# so binaries carry their SQL migrations and need no files at run time.
function(herald_embed out_c symbol)
  set(files ${ARGN})
  # A ';' inside a COMMAND argument would split it: pass the list with $<SEMICOLON>.
  string(REPLACE ";" "$<SEMICOLON>" files_arg "${files}")
  add_custom_command(
    OUTPUT ${out_c}
    COMMAND ${CMAKE_COMMAND} -DOUT=${out_c} -DSYMBOL=${symbol} "-DFILES=${files_arg}"
            -P ${PROJECT_SOURCE_DIR}/cmake/embed_run.cmake
    DEPENDS ${files} ${PROJECT_SOURCE_DIR}/cmake/embed_run.cmake
    COMMENT "Embedding ${symbol}"
    VERBATIM)
endfunction()
