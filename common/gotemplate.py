"""Go's text/template, the part of it `docker ... --format` users write, with Docker's functions.

    render(source, data) -> str                 one execution ("{{.Spec.Name}}")
    Template(source).execute(data) -> str       parse once, run per object (ls rows)
    tabwrite(text, minwidth=10, padding=3)      docker's table writer (Go's elastic tabstops)

Used by the CLI's --format and by the worker for Swarm's placeholders ({{.Task.Slot}} ...).

Supported: text and actions with `{{-`/`-}}` trimming and `{{/* comments */}}`; pipelines
(`{{.Name | upper}}`); fields and chains on `.`, `$`, variables and parenthesised pipelines;
variables (`$x := ...`, `$x = ...`, `range $i, $e := ...`); `if`/`else if`/`else`, `range`
(with `else`, `break`, `continue`), `with`/`else with`; string, raw string, number, bool and nil
literals. Functions: Go's builtins (and, or, not, len, index, slice, print, printf, println,
eq, ne, lt, le, gt, ge, html, urlquery) and Docker's (json, split, join, title, lower, upper,
pad, truncate). `define`/`template`/`block` are refused with a clear error.

Data is what `json.loads` gives (dicts, lists, strings, numbers, bools, None), as Docker's
`inspect` falls back to raw JSON with `missingkey=error`; a `Fields` dict stands for one of the
CLI's row objects (a Go struct): a field it lacks is "can't evaluate field X in type T". Every
error is a TemplateError with Go's wording ("template: :1:2: executing \"\" at <.Bogus>: ..."),
never an ignored format.
"""

from __future__ import annotations

import html
import json
import math
import re
import urllib.parse
from dataclasses import dataclass, field
from typing import Any, Callable


class TemplateError(Exception):
    """A template that cannot be parsed or executed; the message is Go's."""


class Fields(dict):
    """A row object of the CLI (Go struct-like): unknown fields are errors naming the type."""

    def __init__(self, type_name: str, values: dict):
        super().__init__(values)
        self.type_name = type_name


class StringMap(dict):
    """A Go map[string]string: indexing a missing key gives "" (the zero value), not nil."""


# ---- lexing ------------------------------------------------------------------------------------

_TOKEN = re.compile(r"""
    (?P<space>\s+)
  | (?P<string>"(?:[^"\\\n]|\\.)*")
  | (?P<raw>`[^`]*`)
  | (?P<char>'(?:[^'\\\n]|\\.)+')
  | (?P<number>[+-]?(?:0[xX][0-9a-fA-F_]+|0[oO][0-7_]+|0[bB][01_]+|(?:[0-9][0-9_]*\.?[0-9_]*|\.[0-9][0-9_]*)(?:[eE][+-]?[0-9]+)?))
  | (?P<declare>:=)
  | (?P<assign>=)
  | (?P<field>(?:\.[A-Za-z_][A-Za-z0-9_]*)+)
  | (?P<dot>\.)
  | (?P<variable>\$[A-Za-z0-9_]*)
  | (?P<ident>[A-Za-z_][A-Za-z0-9_]*)
  | (?P<punct>[(),|])
""", re.VERBOSE)


@dataclass
class Tok:
    kind: str
    text: str
    pos: int            # offset in the whole template source


def _tokens(src: str, start: int, end: int, err: Callable[[int, str], TemplateError]) -> list[Tok]:
    out, i = [], start
    while i < end:
        m = _TOKEN.match(src, i, end)
        if not m:
            raise err(i, f"unexpected {src[i]!r} in command" if src[i] != "}" else 'unexpected "}" in operand')
        kind = m.lastgroup
        if kind != "space":
            out.append(Tok(kind, m.group(), i))
        # a field directly after ")" or a variable is a chain, handled by the parser
        i = m.end()
    return out


# ---- the parse tree ------------------------------------------------------------------------------

@dataclass
class Node:
    pos: int


@dataclass
class Text(Node):
    text: str


@dataclass
class Operand(Node):
    kind: str             # field, dot, variable, ident, string, number, bool, nil, pipe
    value: Any = None     # name / literal / Pipeline
    chain: tuple[str, ...] = ()
    source: str = ""


@dataclass
class Command(Node):
    args: list[Operand]


@dataclass
class Pipeline(Node):
    decl: list[str]
    assign: bool          # `=` rather than `:=`
    cmds: list[Command]
    source: str = ""


@dataclass
class Action(Node):
    pipe: Pipeline


@dataclass
class Branch(Node):
    kind: str             # if, range, with
    pipe: Pipeline
    body: list
    orelse: list | None = None


@dataclass
class Control(Node):
    kind: str             # break, continue


_FUNCS: dict[str, Callable] = {}


class _Parser:
    def __init__(self, src: str, name: str = "", funcs: frozenset[str] = frozenset()):
        self.src, self.name, self.extra_funcs = src, name, funcs

    def line(self, pos: int) -> int:
        return self.src.count("\n", 0, pos) + 1

    def error(self, pos: int, message: str) -> TemplateError:
        return TemplateError(f"template: {self.name}:{self.line(pos)}: {message}")

    # split into text and actions
    def items(self) -> list[tuple[str, int, int, int]]:
        """(kind, start, end, pos): kind "text" or "action" (start/end of the inside)."""
        src, out, i = self.src, [], 0
        while True:
            j = src.find("{{", i)
            if j < 0:
                out.append(("text", i, len(src), i))
                return out
            text_end = j
            inner = j + 2
            if src.startswith("- ", inner) or src.startswith("-\t", inner) or src.startswith("-\n", inner) \
                    or src.startswith("-\r", inner):
                text_end = len(src[i:j].rstrip(" \t\r\n")) + i
                inner += 1
            out.append(("text", i, text_end, i))
            close = self._find_close(inner)
            if close < 0:
                raise self.error(j, "unclosed action")
            end, after = close, close + 2
            if src[close - 1] == "-" and close - 2 >= inner and src[close - 2] in " \t\r\n":
                end = close - 1
                k = after
                while k < len(src) and src[k] in " \t\r\n":
                    k += 1
                after = k
            body = src[inner:end].strip()
            if body.startswith("/*"):
                if not body.endswith("*/"):
                    raise self.error(j, "unclosed comment")
            else:
                out.append(("action", inner, end, j))
            i = after

    def _find_close(self, i: int) -> int:
        """The "}}" closing the action starting at i, skipping quoted strings and comments."""
        src = self.src
        while i < len(src):
            c = src[i]
            if src.startswith("}}", i):
                return i
            if src.startswith("/*", i):
                k = src.find("*/", i + 2)
                if k < 0:
                    return -1
                i = k + 2
                continue
            if c in "\"'":
                k = i + 1
                while k < len(src) and src[k] != c:
                    if src[k] == "\n":
                        raise self.error(i, "unterminated quoted string")
                    k += 2 if src[k] == "\\" else 1
                i = k + 1
                continue
            if c == "`":
                k = src.find("`", i + 1)
                if k < 0:
                    raise self.error(i, "unterminated raw quoted string")
                i = k + 1
                continue
            i += 1
        return -1

    def parse(self) -> list:
        self.stream = self.items()
        self.at = 0
        body, stop = self._list(top=True)
        return body

    def _list(self, top: bool = False) -> tuple[list, tuple[str, list[Tok], int] | None]:
        """Nodes up to an {{end}} / {{else ...}} (returned as stop) or the end of input."""
        nodes: list = []
        while self.at < len(self.stream):
            kind, start, end, pos = self.stream[self.at]
            self.at += 1
            if kind == "text":
                if end > start:
                    nodes.append(Text(pos, self.src[start:end]))
                continue
            toks = _tokens(self.src, start, end, self.error)
            if not toks:
                raise self.error(pos, "missing value for command")
            head = toks[0]
            if head.kind == "ident" and head.text in ("end", "else"):
                if top:
                    raise self.error(pos, f"unexpected {{{{{head.text}}}}}")
                return nodes, (head.text, toks[1:], pos)
            if head.kind == "ident" and head.text in ("if", "range", "with"):
                nodes.append(self._branch(head.text, toks[1:], pos))
            elif head.kind == "ident" and head.text in ("break", "continue"):
                if not getattr(self, "_in_range", 0):
                    raise self.error(pos, f"{{{{{head.text}}}}} outside {{{{range}}}}")
                nodes.append(Control(pos, head.text))
            elif head.kind == "ident" and head.text in ("define", "template", "block"):
                raise self.error(pos, f"{{{{{head.text}}}}} is not supported in --format templates")
            else:
                nodes.append(Action(pos, self._pipeline(toks, pos, allow_decl=True)))
        if not top:
            raise self.error(len(self.src), "unexpected EOF")
        return nodes, None

    def _branch(self, kind: str, toks: list[Tok], pos: int) -> Branch:
        pipe = self._pipeline(toks, pos, allow_decl=True, context=kind)
        if kind == "range":
            self._in_range = getattr(self, "_in_range", 0) + 1
        body, stop = self._list()
        if kind == "range":
            self._in_range -= 1
        node = Branch(pos, kind, pipe, body)
        assert stop is not None
        word, rest, stop_pos = stop
        if word == "else":
            if rest and rest[0].kind == "ident" and rest[0].text in ("if", "with") and kind in ("if", "with"):
                if rest[0].text != kind:
                    raise self.error(stop_pos, f"expected {{{{end}}}} or {{{{else {kind}}}}}")
                node.orelse = [self._branch(kind, rest[1:], stop_pos)]
                return node
            if rest:
                raise self.error(stop_pos, f"unexpected {rest[0].text!r} in else")
            node.orelse, stop = self._list()
            assert stop is not None
            if stop[0] != "end":
                raise self.error(stop[2], "expected end; found {{else}}")
        elif rest:
            raise self.error(stop_pos, f"unexpected {rest[0].text!r} in end")
        return node

    def _pipeline(self, toks: list[Tok], pos: int, allow_decl: bool, context: str = "command") -> Pipeline:
        decl: list[str] = []
        assign = False
        source = self.src[toks[0].pos:toks[-1].pos + len(toks[-1].text)] if toks else ""
        # declarations: $x := / $x = / $i, $e :=
        if allow_decl and toks and toks[0].kind == "variable":
            if len(toks) > 1 and toks[1].kind in ("declare", "assign"):
                decl, assign, toks = [toks[0].text], toks[1].kind == "assign", toks[2:]
            elif (context == "range" and len(toks) > 3 and toks[1].text == "," and toks[2].kind == "variable"
                  and toks[3].kind in ("declare", "assign")):
                decl, assign, toks = [toks[0].text, toks[2].text], toks[3].kind == "assign", toks[4:]
        if not toks:
            raise self.error(pos, f"missing value for {context}")
        cmds: list[Command] = []
        current: list[Operand] = []
        i = 0
        while i < len(toks):
            tok = toks[i]
            if tok.kind == "punct" and tok.text == "|":
                if not current:
                    raise self.error(tok.pos, "missing value for command")
                cmds.append(Command(current[0].pos, current))
                current = []
                i += 1
                continue
            operand, i = self._operand(toks, i)
            current.append(operand)
        if not current:
            raise self.error(pos, "missing value for command")
        cmds.append(Command(current[0].pos, current))
        for stage, cmd in enumerate(cmds[1:], start=2):
            if cmd.args[0].kind in ("literal", "nil"):
                raise self.error(cmd.pos, f"non executable command in pipeline stage {stage}")
        return Pipeline(pos, decl, assign, cmds, source)

    def _operand(self, toks: list[Tok], i: int) -> tuple[Operand, int]:
        tok = toks[i]
        kind, text = tok.kind, tok.text
        if kind == "punct" and text == "(":
            depth, j = 1, i + 1
            while j < len(toks) and depth:
                if toks[j].text == "(" and toks[j].kind == "punct":
                    depth += 1
                elif toks[j].text == ")" and toks[j].kind == "punct":
                    depth -= 1
                j += 1
            if depth:
                raise self.error(tok.pos, "unclosed left paren")
            inner = toks[i + 1:j - 1]
            if not inner:
                raise self.error(tok.pos, "missing value for parenthesized pipeline")
            operand = Operand(tok.pos, "pipe", self._pipeline(inner, tok.pos, allow_decl=False),
                              source=self.src[tok.pos:toks[j - 1].pos + 1])
            i = j
        elif kind == "punct":
            raise self.error(tok.pos, f"unexpected {text!r} in operand")
        elif kind == "field":
            operand = Operand(tok.pos, "field", None, tuple(text[1:].split(".")), text)
            i += 1
        elif kind == "dot":
            operand = Operand(tok.pos, "dot", None, (), ".")
            i += 1
        elif kind == "variable":
            operand = Operand(tok.pos, "variable", text, (), text)
            i += 1
        elif kind == "ident":
            if text in ("true", "false"):
                operand = Operand(tok.pos, "literal", text == "true", (), text)
            elif text == "nil":
                operand = Operand(tok.pos, "nil", None, (), text)
            else:
                if text not in _FUNCS and text not in self.extra_funcs:
                    raise self.error(tok.pos, f'function "{text}" not defined')
                operand = Operand(tok.pos, "ident", text, (), text)
            i += 1
        elif kind in ("string", "raw", "char"):
            operand = Operand(tok.pos, "literal", _unquote(tok), (), text)
            i += 1
        elif kind == "number":
            operand = Operand(tok.pos, "literal", _number(text, lambda m: self.error(tok.pos, m)), (), text)
            i += 1
        else:
            raise self.error(tok.pos, f"unexpected {text!r} in operand")
        # a chain after ( ... ) or $x:  (index . 0).Name   $x.Name
        if i < len(toks) and toks[i].kind == "field" and toks[i].pos == toks[i - 1].pos + len(toks[i - 1].text):
            if operand.kind in ("pipe", "variable"):
                operand.chain = operand.chain + tuple(toks[i].text[1:].split("."))
                operand.source += toks[i].text
                i += 1
        return operand, i


def _unquote(tok: Tok) -> Any:
    if tok.kind == "raw":
        return tok.text[1:-1]
    try:
        value = json.loads(tok.text) if tok.kind == "string" else None
    except ValueError:
        value = None
    if value is None:
        body = tok.text[1:-1]
        value = body.encode("latin-1", "backslashreplace").decode("unicode_escape")
    if tok.kind == "char":
        return ord(value)
    return value


def _number(text: str, err: Callable[[str], TemplateError]) -> int | float:
    clean = text.replace("_", "")
    try:
        if re.fullmatch(r"[+-]?0[xXoObB].*", clean):
            return int(clean, 0)
        if re.fullmatch(r"[+-]?[0-9]+", clean):
            return int(clean)
        return float(clean)
    except ValueError:
        raise err(f"bad number syntax: {text!r}") from None


# ---- values as Go prints and tests them ----------------------------------------------------------

def go_string(value: Any) -> str:
    """fmt.Sprint of a value: strings as they are, lists as [a b], maps as map[k:v] (sorted)."""
    if value is None:
        return "<nil>"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return _go_float(value)
    if isinstance(value, Fields):
        return "{" + " ".join(go_string(v) for v in value.values()) + "}"
    if isinstance(value, dict):
        return "map[" + " ".join(f"{go_string(k)}:{go_string(value[k])}" for k in sorted(value, key=str)) + "]"
    if isinstance(value, (list, tuple)):
        return "[" + " ".join(go_string(v) for v in value) + "]"
    return str(value)


def _go_float(value: float) -> str:
    """strconv.FormatFloat(f, 'g', -1, 64), as %v prints a float64: 0.5, 100, 1e+06, 1.5e-05."""
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if math.isnan(value):
        return "NaN"
    if value == 0:
        return "0"
    digits, exponent = _shortest(value)
    if exponent < -4 or exponent >= 6:          # %v is %g with the shortest digits: precision 6 decides
        mantissa = digits[0] + ("." + digits[1:] if len(digits) > 1 else "")
        return f"{'-' if value < 0 else ''}{mantissa}e{'-' if exponent < 0 else '+'}{abs(exponent):02d}"
    text = repr(abs(value))
    if "e" in text:
        text = format(abs(value), "f")
    if text.endswith(".0"):
        text = text[:-2]
    return ("-" if value < 0 else "") + text


def _shortest(value: float) -> tuple[str, int]:
    """The shortest decimal digits of |value| and its decimal exponent."""
    mantissa, _, exp = f"{abs(value):.17e}".partition("e")
    text = repr(abs(value))
    if "e" in text:
        m, _, e = text.partition("e")
        digits = m.replace(".", "").rstrip("0") or "0"
        return digits, int(e) + (0 if "." not in m else 0)
    whole, _, frac = text.partition(".")
    frac = frac.rstrip("0")
    if whole != "0":
        digits = (whole + frac).rstrip("0") or "0"
        return digits, len(whole) - 1
    stripped = frac.lstrip("0")
    return stripped or "0", -(len(frac) - len(stripped)) - 1


def truth(value: Any) -> bool:
    """Go's template truth: false, 0, nil, and empty strings, slices and maps are false."""
    if value is None or value is False:
        return False
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return value != 0
    if isinstance(value, (str, list, tuple)) or (isinstance(value, dict) and not isinstance(value, Fields)):
        return len(value) > 0
    return True


def _type_name(value: Any) -> str:
    if isinstance(value, Fields):
        return value.type_name
    return {str: "string", bool: "bool", int: "int", float: "float64", list: "[]interface {}",
            tuple: "[]interface {}", dict: "map[string]interface {}", type(None): "<nil>"}.get(type(value), "value")


# ---- functions -------------------------------------------------------------------------------------

class _FuncError(Exception):
    pass


FuncError = _FuncError     # what a function given to Template(funcs=...) raises: reported as Go reports it

# SwarmKit's config-template functions (worker/placeholders.expand_config), as stand-ins: enough to
# check that a template parses where there is no task to expand it for (the ControlAPI).
PAYLOAD_FUNCS: dict[str, Callable] = {"secret": lambda target: "", "config": lambda target: "",
                                      "env": lambda key: ""}


def _want(value: Any, kind: type, what: str) -> Any:
    if kind is int and isinstance(value, float) and value == int(value):
        return int(value)
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise _FuncError(f"wrong type for value; expected {what}; got {_type_name(value)}")
    return value


def _json(value: Any) -> str:
    """Docker's json function: compact, no HTML escaping, floats as Go writes them (1000000, not
    1000000.0); a whole row as its MarshalJSON writes it: fields sorted, <, > and & escaped."""
    def plain(v: Any) -> Any:
        if isinstance(v, Fields):
            return {k: plain(v[k]) for k in sorted(v)}
        if isinstance(v, dict):
            return {k: plain(x) for k, x in v.items()}
        if isinstance(v, (list, tuple)):
            return [plain(x) for x in v]
        if isinstance(v, float) and v.is_integer() and abs(v) < 1e21:
            return int(v)
        return v
    text = json.dumps(plain(value), ensure_ascii=False, separators=(",", ":"))
    if isinstance(value, Fields):
        # a row marshals itself with json.Marshal, which escapes HTML characters
        text = text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    return text


def _join(elems: Any, sep: Any) -> str:
    sep = _want(sep, str, "string")
    if elems is None:
        return ""
    if isinstance(elems, (list, tuple)):
        return sep.join(go_string(e) for e in elems)
    if isinstance(elems, dict):
        return sep.join(sorted(go_string(v) for v in elems.values()))
    raise _FuncError(f"expected slice, got {_type_name(elems)}")


def _title(text: Any) -> str:
    text = _want(text, str, "string")
    out, prev_sep = [], True
    for c in text:
        out.append(c.upper() if prev_sep else c)
        prev_sep = not (c.isalnum() or c == "_") if ord(c) < 128 else c.isspace()
    return "".join(out)


def _pad(text: Any, prefix: Any, suffix: Any) -> str:
    text = _want(text, str, "string")
    return text and " " * _want(prefix, int, "int") + text + " " * _want(suffix, int, "int")


def _truncate(text: Any, length: Any) -> str:
    text, length = _want(text, str, "string"), _want(length, int, "int")
    return text if len(text) < length else text[:length]


def _index(item: Any, *keys: Any) -> Any:
    for key in keys:
        if isinstance(item, dict):
            if key not in item:
                if isinstance(item, Fields):
                    raise _FuncError(f"can't index item of type {item.type_name}")
                item = "" if isinstance(item, StringMap) else None
                continue
            item = item[key]
        elif isinstance(item, (list, tuple, str)):
            key = _want(key, int, "int")
            if not 0 <= key < len(item):
                raise _FuncError(f"error calling index: index out of range: {key}")
            item = item[key] if not isinstance(item, str) else ord(item[key])
        elif item is None:
            raise _FuncError("error calling index: index of untyped nil")
        else:
            raise _FuncError(f"error calling index: can't index item of type {_type_name(item)}")
    return item


def _slice(item: Any, *bounds: Any) -> Any:
    if not isinstance(item, (list, tuple, str)):
        raise _FuncError(f"error calling slice: can't slice item of type {_type_name(item)}")
    b = [_want(x, int, "int") for x in bounds]
    if len(b) > 2:
        raise _FuncError("error calling slice: too many slice indexes")
    start, end = (b + [0, len(item)])[0], (b[1] if len(b) > 1 else len(item))
    if not 0 <= start <= end <= len(item):
        raise _FuncError(f"error calling slice: index out of range: {end}")
    return item[start:end]


def _length(item: Any) -> int:
    if isinstance(item, (str, list, tuple, dict)) and not isinstance(item, Fields):
        return len(item)
    raise _FuncError(f"error calling len: len of type {_type_name(item)}")


def _sprint(*args: Any) -> str:
    out = ""
    for i, arg in enumerate(args):
        if i and not isinstance(arg, str) and not isinstance(args[i - 1], str):
            out += " "
        out += go_string(arg)
    return out


_VERB = re.compile(r"%([-+# 0]*)(\d+|\*)?(?:\.(\d+))?([a-zA-Z%])")


def _sprintf(fmt: Any, *args: Any) -> str:
    fmt = _want(fmt, str, "string")
    values = list(args)
    out, last = [], 0
    for m in _VERB.finditer(fmt):
        out.append(fmt[last:m.start()])
        last = m.end()
        flags, width, prec, verb = m.group(1), m.group(2) or "", m.group(3), m.group(4)
        if verb == "%":
            out.append("%")
            continue
        if not values:
            out.append(f"%!{verb}(MISSING)")
            continue
        value = values.pop(0)
        spec = flags + width + (f".{prec}" if prec is not None else "")
        if verb in "vs":
            text = go_string(value) if verb == "v" or isinstance(value, str) else f"%!s({_type_name(value)}={go_string(value)})"
            out.append(format(text[:int(prec)] if prec is not None else text,
                              ("<" if "-" in flags else ">") + width))
        elif verb == "q":
            out.append(format(json.dumps(go_string(value), ensure_ascii=False), ("<" if "-" in flags else ">") + width))
        elif verb == "t" and isinstance(value, bool):
            out.append(format(go_string(value), ("<" if "-" in flags else ">") + width))
        elif verb in "dxXob" and isinstance(value, int) and not isinstance(value, bool):
            out.append(("%" + spec + verb).replace("%" + spec + "b", "{:" + spec.replace("-", "<") + "b}") % value
                       if verb != "b" else format(value, spec.replace("-", "<") + "b"))
        elif verb in "feEgG" and isinstance(value, (int, float)) and not isinstance(value, bool):
            out.append(("%" + spec + verb) % value)
        else:
            out.append(f"%!{verb}({_type_name(value)}={go_string(value)})")
    out.append(fmt[last:])
    if values:
        out.append("%!(EXTRA " + ", ".join(f"{_type_name(v)}={go_string(v)}" for v in values) + ")")
    return "".join(out)


def _compare(op: str) -> Callable:
    def check(a: Any, b: Any) -> tuple[Any, Any]:
        numeric = (int, float)
        if isinstance(a, bool) or isinstance(b, bool):
            if type(a) is not type(b):
                raise _FuncError(f"error calling {op}: incompatible types for comparison")
        elif isinstance(a, numeric) and isinstance(b, numeric):
            return a, b
        elif type(a) is not type(b) and a is not None and b is not None:
            raise _FuncError(f"error calling {op}: incompatible types for comparison")
        if op not in ("eq", "ne") and not isinstance(a, (str, int, float)):
            raise _FuncError(f"error calling {op}: invalid type for comparison")
        return a, b

    def fn(a: Any, *rest: Any) -> bool:
        if op == "eq":
            if not rest:
                raise _FuncError("error calling eq: missing argument for comparison")
            return any(x == y for x, y in (check(a, b) for b in rest))
        if len(rest) != 1:
            raise _FuncError(f"wrong number of args for {op}: want 2 got {len(rest) + 1}")
        x, y = check(a, rest[0])
        return {"ne": x != y, "lt": x < y, "le": x <= y, "gt": x > y, "ge": x >= y}[op]
    return fn


def _split(text: Any, sep: Any) -> list[str]:
    text, sep = _want(text, str, "string"), _want(sep, str, "string")
    return list(text) if sep == "" else text.split(sep)


_FUNCS.update({
    # Docker's (templates.basicFunctions)
    "json": _json, "split": _split, "join": _join, "title": _title,
    "lower": lambda s: _want(s, str, "string").lower(), "upper": lambda s: _want(s, str, "string").upper(),
    "pad": _pad, "truncate": _truncate,
    # Go's builtins
    "and": None, "or": None, "not": lambda v: not truth(v), "len": _length, "index": _index, "slice": _slice,
    "print": _sprint, "printf": _sprintf, "println": lambda *a: " ".join(go_string(x) for x in a) + "\n",
    "eq": _compare("eq"), "ne": _compare("ne"), "lt": _compare("lt"), "le": _compare("le"),
    "gt": _compare("gt"), "ge": _compare("ge"),
    "html": lambda *a: html.escape(_sprint(*a)).replace("&quot;", "&#34;").replace("&#x27;", "&#39;"),
    "urlquery": lambda *a: urllib.parse.quote_plus(_sprint(*a)),
})

# Table headers: Docker runs the template over the header names with these instead (pad is kept).
_HEADER_FUNCS = dict(_FUNCS, json=lambda v: v, split=lambda v, _: v, join=lambda v, _: v, title=lambda v: v,
                     lower=lambda v: v, upper=lambda v: v, truncate=lambda v, _: v)

_ARITY = {"json": 1, "split": 2, "join": 2, "title": 1, "lower": 1, "upper": 1, "pad": 3, "truncate": 2,
          "not": 1, "len": 1}


# ---- execution -----------------------------------------------------------------------------------------

class _Break(Exception):
    pass


class _Continue(Exception):
    pass


@dataclass
class _State:
    parser: _Parser
    funcs: dict
    vars: list[tuple[str, Any]] = field(default_factory=list)
    out: list[str] = field(default_factory=list)

    def error(self, node: Node, source: str, message: str) -> TemplateError:
        src = self.parser.src
        line = src.count("\n", 0, node.pos) + 1
        col = node.pos - (src.rfind("\n", 0, node.pos) + 1)
        name = self.parser.name
        return TemplateError(f'template: {name}:{line}:{col}: executing "{name}" at <{source}>: {message}')

    def lookup(self, name: str, node: Node) -> Any:
        for var, value in reversed(self.vars):
            if var == name:
                return value
        raise self.error(node, name, f"undefined variable: {name}")

    def set(self, name: str, value: Any, node: Node) -> None:
        for i in range(len(self.vars) - 1, -1, -1):
            if self.vars[i][0] == name:
                self.vars[i] = (name, value)
                return
        raise self.error(node, name, f"undefined variable: {name}")


class Template:
    """A parsed template: `execute(data)` runs it (TemplateError on failure). ``funcs`` adds
    functions (Go's template.Funcs), as SwarmKit's config templates add secret, config and env."""

    def __init__(self, source: str, name: str = "", funcs: dict[str, Callable] | None = None):
        self.source = source
        self._funcs = dict(funcs or {})
        self._parser = _Parser(source, name, frozenset(self._funcs))
        self._nodes = self._parser.parse()

    def execute(self, data: Any, header: bool = False) -> str:
        funcs = _HEADER_FUNCS if header else _FUNCS
        state = _State(self._parser, dict(funcs, **self._funcs) if self._funcs else funcs, [("$", data)])
        self._run(state, self._nodes, data)
        return "".join(state.out)

    # -- nodes
    def _run(self, st: _State, nodes: list, dot: Any) -> None:
        for node in nodes:
            if isinstance(node, Text):
                st.out.append(node.text)
            elif isinstance(node, Action):
                value = self._pipe(st, node.pipe, dot)
                if not node.pipe.decl:
                    st.out.append(_printable(value))
            elif isinstance(node, Branch):
                self._branch(st, node, dot)
            elif isinstance(node, Control):
                raise _Break() if node.kind == "break" else _Continue()

    def _branch(self, st: _State, node: Branch, dot: Any) -> None:
        mark = len(st.vars)
        try:
            if node.kind == "range":
                self._range(st, node, dot)
                return
            value = self._pipe(st, node.pipe, dot, declare_range=False)
            if truth(value):
                self._run(st, node.body, value if node.kind == "with" else dot)
            elif node.orelse is not None:
                self._run(st, node.orelse, dot)
        finally:
            del st.vars[mark:]

    def _range(self, st: _State, node: Branch, dot: Any) -> None:
        pipe = node.pipe
        value = self._pipe(st, Pipeline(pipe.pos, [], False, pipe.cmds, pipe.source), dot)
        if isinstance(value, dict) and not isinstance(value, Fields):
            items = [(k, value[k]) for k in sorted(value, key=str)]
        elif isinstance(value, (list, tuple)):
            items = list(enumerate(value))
        elif isinstance(value, int) and not isinstance(value, bool):
            items = [(i, i) for i in range(value)]
        elif value is None:
            items = []
        else:
            raise st.error(node, pipe.source, f"range can't iterate over {go_string(value)}")
        if not items:
            if node.orelse is not None:
                self._run(st, node.orelse, dot)
            return
        mark = len(st.vars)
        for key, elem in items:
            if len(pipe.decl) == 1:
                st.vars.append((pipe.decl[0], elem))
            elif len(pipe.decl) == 2:
                st.vars.extend([(pipe.decl[0], key), (pipe.decl[1], elem)])
            try:
                self._run(st, node.body, elem)
            except _Continue:
                pass
            except _Break:
                break
            finally:
                del st.vars[mark:]

    def _pipe(self, st: _State, pipe: Pipeline, dot: Any, declare_range: bool = True) -> Any:
        value: Any = _NO_VALUE
        for cmd in pipe.cmds:
            value = self._command(st, cmd, dot, value)
        if pipe.decl:
            if pipe.assign:
                st.set(pipe.decl[0], value, pipe)
            else:
                st.vars.append((pipe.decl[0], value))
        return value

    def _command(self, st: _State, cmd: Command, dot: Any, final: Any) -> Any:
        head = cmd.args[0]
        if head.kind == "ident":
            name = head.value
            if name in ("and", "or"):
                args = [self._arg(st, a, dot) for a in cmd.args[1:]] + ([] if final is _NO_VALUE else [final])
                if not args:
                    raise st.error(head, name, f"wrong number of args for {name}: want at least 1 got 0")
                for arg in args[:-1]:
                    if truth(arg) == (name == "or"):
                        return arg
                return args[-1]
            args = [self._arg(st, a, dot) for a in cmd.args[1:]]
            if final is not _NO_VALUE:
                args.append(final)
            want = _ARITY.get(name)
            if want is not None and len(args) != want:
                raise st.error(head, name, f"wrong number of args for {name}: want {want} got {len(args)}")
            try:
                return st.funcs[name](*args)
            except _FuncError as err:
                raise st.error(head, name, str(err)) from None
            except TypeError:
                raise st.error(head, name, f"wrong number of args for {name}: got {len(args)}") from None
        if len(cmd.args) > 1 or final is not _NO_VALUE:
            raise st.error(head, head.source, f"can't give argument to non-function {head.source}")
        return self._arg(st, head, dot)

    def _arg(self, st: _State, op: Operand, dot: Any) -> Any:
        if op.kind == "literal":
            return op.value
        if op.kind == "nil":
            raise st.error(op, "nil", "nil is not a command")
        if op.kind == "ident":
            return self._command(st, Command(op.pos, [op]), dot, _NO_VALUE)
        if op.kind == "dot":
            base = dot
        elif op.kind == "field":
            base = dot
        elif op.kind == "variable":
            base = st.lookup(op.value, op)
        else:
            base = self._pipe(st, op.value, dot)
        return self._chain(st, op, base, op.chain)

    def _chain(self, st: _State, op: Operand, value: Any, chain: tuple[str, ...]) -> Any:
        for i, name in enumerate(chain):
            if isinstance(value, Fields):
                if name not in value:
                    raise st.error(op, op.source, f"can't evaluate field {name} in type {value.type_name}")
                value = value[name]
            elif isinstance(value, dict):
                if name not in value:
                    raise st.error(op, op.source, f'map has no entry for key "{name}"')
                value = value[name]
            elif value is None:
                raise st.error(op, op.source, f"nil pointer evaluating interface {{}}.{name}")
            else:
                raise st.error(op, op.source, f"can't evaluate field {name} in type {_type_name(value)}")
        return value


class _NoValue:
    pass


_NO_VALUE = _NoValue()


def _printable(value: Any) -> str:
    if value is _NO_VALUE:
        return "<no value>"
    return go_string(value)


def render(source: str, data: Any) -> str:
    return Template(source).execute(data)


# ---- docker's tabwriter (Go's text/tabwriter, elastic tabstops) ----------------------------------------

def tabwrite(text: str, minwidth: int = 10, padding: int = 3) -> str:
    """Align tab-terminated cells as docker's table output does (tabwriter.NewWriter(out, 10, 1, 3,
    ' ', 0)): a column is as wide as its widest cell plus 3, at least 10; the text after the last
    tab of a line is not a column."""
    lines = [line.split("\t") for line in text.split("\n")]
    out: list[str] = []
    widths: list[int] = []

    def write_lines(line0: int, line1: int) -> None:
        for i in range(line0, line1):
            cells = lines[i]
            parts = []
            for j, cell in enumerate(cells):
                parts.append(cell)
                if j < len(widths) and j < len(cells) - 1:
                    parts.append(" " * (widths[j] - len(cell)))
            out.append("".join(parts))

    def fmt(line0: int, line1: int) -> None:
        column = len(widths)
        this = line0
        while this < line1:
            if column >= len(lines[this]) - 1:
                this += 1
                continue
            write_lines(line0, this)
            line0 = this
            width = minwidth
            while this < line1 and column < len(lines[this]) - 1:
                width = max(width, len(lines[this][column]) + padding)
                this += 1
            widths.append(width)
            fmt(line0, this)
            widths.pop()
            line0 = this
        write_lines(line0, line1)

    fmt(0, len(lines))
    return "\n".join(out)
