#!/usr/bin/env node
// Copies the non-TypeScript files the code loads at run time (the Lua scripts) from src/ to dist/.
import { cpSync, readdirSync, statSync } from "node:fs";
import { join, relative } from "node:path";

function copy(dir) {
  for (const name of readdirSync(dir)) {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) copy(path);
    else if (name.endsWith(".lua")) cpSync(path, join("dist", relative("src", path)));
  }
}
copy("src");
