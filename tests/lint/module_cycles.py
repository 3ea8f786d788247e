#!/usr/bin/env python3
"""Fails when the modules of a crate import each other in a cycle.

Reads every `.rs` file of each crate given (its `src/` directory), takes each module's
references to other modules of the same crate (`crate::a::b`, `super::x`, `self::x`), and
looks for cycles in that graph. Test modules (`#[cfg(test)] mod tests` to the end of a file)
and the crate root (an index that re-exports) are left out: tests may reach anywhere, and the
root names every module by definition. A parent's `mod child;` is not an edge; a parent that
uses its child's items is one, so a child cannot use its parent's items back.

Usage: module_cycles.py CRATE_SRC_DIR...   (exit status 1 and the cycles when there are any)
"""
import os
import re
import sys

REF = re.compile(r"\b(crate|super|self)((?:::[a-z_][a-z0-9_]*)+)")
USE_GROUP = re.compile(r"\buse\s+(crate|super|self)((?:::[a-z_][a-z0-9_]*)*)::\{([^;]*)\};", re.S)


def module_of(src, path):
    rel = os.path.relpath(path, src)[:-3].split(os.sep)
    if rel[-1] in ("mod", "lib", "main"):
        rel = rel[:-1]
    return tuple(rel)


def strip(text):
    text = re.sub(r"//[^\n]*", "", text)  # comments and doc comments
    m = re.search(r"#\[cfg\(test\)\]\s*(#\[[^\]]*\]\s*)*mod tests", text)
    if m:
        text = text[: m.start()]
    return text


def resolve(mod, kind, parts, modules):
    if kind == "crate":
        base = ()
    elif kind == "super":
        base = mod[:-1]
    else:
        base = mod
    while parts and parts[0] == "super":
        base, parts = base[:-1], parts[1:]
    path = base + tuple(parts)
    # the longest prefix that is a module
    for n in range(len(path), 0, -1):
        if path[:n] in modules:
            return path[:n]
    return None


def edges_of(src):
    files = []
    for root, _, names in os.walk(src):
        files += [os.path.join(root, n) for n in names if n.endswith(".rs")]
    modules = {module_of(src, f) for f in files}
    graph = {}
    for f in files:
        mod = module_of(src, f)
        if mod == ():
            continue
        text = strip(open(f, encoding="utf-8").read())
        refs = []
        for kind, prefix, group in USE_GROUP.findall(text):
            base = [p for p in prefix.split("::") if p]
            for item in re.split(r"[,{}\s]+", group):
                item = item.split(" as ")[0]
                if re.fullmatch(r"[a-z_][a-z0-9_]*(::[a-z_][a-z0-9_]*)*", item or "-"):
                    refs.append((kind, base + item.split("::")))
                elif item:
                    refs.append((kind, base))
        for kind, rest in REF.findall(text):
            refs.append((kind, [p for p in rest.split("::") if p]))
        for kind, parts in refs:
            target = resolve(mod, kind, parts, modules)
            if target and target != () and target != mod and target[: len(mod)] != mod:
                graph.setdefault(mod, set()).add(target)
    return graph


def cycles(graph):
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on, out = {}, {}, [], set(), []
    counter = [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    sys.setrecursionlimit(10000)
    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def main(dirs):
    failed = False
    for src in dirs:
        graph = edges_of(src)
        for comp in cycles(graph):
            failed = True
            names = ["::".join(m) for m in comp]
            print(f"{src}: import cycle among {', '.join(names)}")
            for m in comp:
                inside = sorted("::".join(t) for t in graph.get(m, ()) if t in comp)
                print(f"  {'::'.join(m)} -> {', '.join(inside)}")
    if failed:
        sys.exit(1)
    print(f"no import cycles in {', '.join(dirs)}")


if __name__ == "__main__":
    main(sys.argv[1:] or ["gateway/src"])
