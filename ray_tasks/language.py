"""Language of a file as The Stack v2 decided it: go-enry (GitHub linguist's Go port), called directly.

Why go-enry itself: The Stack v2 labelled every file with ``enry.get_language(filename,
content)`` (an empty answer becomes None), and its filters, exemptions and statistics are keyed
by linguist's names (``Vim Script``, ``SVG``, ``Roff Manpage``...). ``enry-python`` on PyPI ships
the compiled go-enry library (Apache-2.0), so the same answer comes without a Go build; no
re-implementation here can drift from it. Its order of evidence is linguist's: modeline, file
name, shebang, extension, XML header, content heuristics (``.h``, ``.pl``, ``.d``...), then the
Bayesian classifier. The Stack v2's calls: https://github.com/bigcode-project/the-stack-v2
(``get_file_contents.py``); go-enry: https://github.com/go-enry/go-enry.

The binding cannot list its languages (go-enry's C API has no such call), so ``LINGUIST_NAMES``
below is go-enry's ``data/type.go`` at linguist v9.3.0 (https://github.com/Esoiya/go-enry, the
fork the wheel is built from), less the names the bundled library does not know; the test suite
checks that every name in it is known to the library and that every label seen on real files is
in it. Rule names are validated against the library itself (``check_languages``).
"""

from __future__ import annotations

from functools import lru_cache

import enry

LANGUAGE_TYPES = ("programming", "markup", "data", "prose")
"""linguist's language types, as ``get_language_type`` names them (``unknown`` otherwise)."""


def detect_language(path: str, content: str | bytes | None = None) -> str | None:
    """linguist's language for a repository path and (when given) its content, or None."""
    return enry.get_language(_filename(path), content_bytes(content)) or None


def content_bytes(content: str | bytes | None) -> bytes:
    """What go-enry reads: the file's bytes (a text goes back to UTF-8, as ingest decoded it)."""
    if content is None:
        return b""
    # surrogatepass: a text with a lone surrogate still reaches go-enry (as bytes it ignores).
    return content if isinstance(content, bytes) else content.encode("utf-8", "surrogatepass")


def _filename(path: str) -> str:
    """The path go-enry sees: as given, relative (vendor rules such as ``^vendor/`` anchor at the root)."""
    return path.lstrip("/")


def is_vendor(path: str) -> bool:
    """linguist's ``vendor.yml``: dependency folders, bundled libraries, build wrappers, IDE folders."""
    return enry.is_vendor(_filename(path))


def is_generated(path: str, content: str | bytes | None = None) -> bool:
    """linguist's ``generated.rb``: lock files, minified bundles, protobuf output, generated headers."""
    return enry.is_generated(_filename(path), content_bytes(content))


def is_documentation(path: str) -> bool:
    """linguist's ``documentation.yml``: docs/, README, CHANGELOG, examples..."""
    return enry.is_documentation(_filename(path))


@lru_cache(maxsize=4096)
def language_type(name: str) -> str | None:
    """``programming``, ``markup``, ``data`` or ``prose`` for a linguist name; None when go-enry does not know it."""
    kind = enry.get_language_type(name)
    return kind if kind in LANGUAGE_TYPES else None


def check_languages(names: list[str] | tuple[str, ...]) -> list[str]:
    """The names go-enry does not know (linguist spells them with its own case and spaces)."""
    return [n for n in names if language_type(n) is None]


def supported_languages() -> list[tuple[str, str]]:
    """(name, type) for every language of the list that the bundled go-enry knows, sorted by name."""
    return [(name, kind) for name in sorted(LINGUIST_NAMES) if (kind := language_type(name)) is not None]


# go-enry data/type.go (linguist v9.3.0) less the names the bundled library does not know
# ("KoLMafia ASH", "Mathematica", renamed "Wolfram Language"), plus the newer names it was seen
# to give on real files ("Wolfram Language", "Go Template"; benchmarks/languages.py reports others).
LINGUIST_NAMES: tuple[str, ...] = tuple("""
1C Enterprise|2-Dimensional Array|4D|ABAP|ABAP CDS|ABNF|AGS Script|AIDL|AL|AMPL|ANTLR|API Blueprint|APL|ASL|
ASN.1|ASP.NET|ATS|ActionScript|Ada|Adblock Filter List|Adobe Font Metrics|Agda|Aiken|Alloy|Alpine Abuild|
Altium Designer|AngelScript|Answer Set Programming|Ant Build System|Antlers|ApacheConf|Apex|
Apollo Guidance Computer|AppleScript|Arc|AsciiDoc|AspectJ|Assembly|Astro|Asymptote|Augeas|AutoHotkey|AutoIt|
Avro IDL|Awk|B4X|BASIC|BQN|Ballerina|Batchfile|Beef|Befunge|Berry|BibTeX|BibTeX Style|Bicep|Bikeshed|Bison|
BitBake|Blade|BlitzBasic|BlitzMax|Bluespec|Bluespec BH|Boo|Boogie|Brainfuck|BrighterScript|Brightscript|
Browserslist|Bru|BuildStream|C|C#|C++|C-ObjDump|C2hs Haskell|C3|CAP CDS|CIL|CLIPS|CMake|COBOL|CODEOWNERS|
COLLADA|CSON|CSS|CSV|CUE|CWeb|Cabal Config|Caddyfile|Cadence|Cairo|Cairo Zero|CameLIGO|Cap'n Proto|Carbon|
CartoCSS|Ceylon|Chapel|Charity|Checksums|ChucK|Circom|Cirru|Clarion|Clarity|Classic ASP|Clean|Click|Clojure|
Closure Templates|Cloud Firestore Security Rules|Clue|CoNLL-U|CodeQL|CoffeeScript|ColdFusion|ColdFusion CFC|
Common Lisp|Common Workflow Language|Component Pascal|Cooklang|Cool|Cpp-ObjDump|Creole|Crystal|Csound|
Csound Document|Csound Score|Cuda|Cue Sheet|Curry|Cycript|Cylc|Cypher|Cython|D|D-ObjDump|D2|
DIGITAL Command Language|DM|DNS Zone|DTrace|Dafny|Darcs Patch|Dart|Daslang|DataWeave|
Debian Package Control File|DenizenScript|Dhall|Diff|DirectX 3D File|Dockerfile|Dogescript|Dotenv|Dune|
Dylan|E|E-mail|EBNF|ECL|ECLiPSe|EJS|EQ|Eagle|Earthly|Easybuild|Ecere Projects|Ecmarkup|Edge|EdgeQL|
EditorConfig|Edje Data Collection|Eiffel|Elixir|Elm|Elvish|Elvish Transcript|Emacs Lisp|EmberScript|Erlang|
Euphoria|F#|F*|FIGlet Font|FIRRTL|FLUX|Factor|Fancy|Fantom|Faust|Fennel|Filebench WML|Filterscript|Flix|
Fluent|Formatted|Forth|Fortran|Fortran Free Form|FreeBASIC|FreeMarker|Frege|Futhark|G-code|GAML|GAMS|GAP|
GCC Machine Description|GDB|GDScript|GDShader|GEDCOM|GLSL|GN|GSC|Game Maker Language|Gemfile.lock|Gemini|
Genero 4gl|Genero per|Genie|Genshi|Gentoo Ebuild|Gentoo Eclass|Gerber Image|Gettext Catalog|Gherkin|
Git Attributes|Git Config|Git Revision List|Gleam|Glimmer JS|Glimmer TS|Glyph|
Glyph Bitmap Distribution Format|Gnuplot|Go|Go Template|Go Checksums|Go Module|Go Workspace|Godot Resource|Golo|Gosu|
Grace|Gradle|Gradle Kotlin DSL|Grammatical Framework|Graph Modeling Language|GraphQL|Graphviz (DOT)|Groovy|
Groovy Server Pages|HAProxy|HCL|HIP|HLSL|HOCON|HTML|HTML+ECR|HTML+EEX|HTML+ERB|HTML+PHP|HTML+Razor|HTTP|
HXML|Hack|Haml|Handlebars|Harbour|Hare|Haskell|Haxe|HiveQL|HolyC|Hosts File|Hy|HyPhy|IDL|IGOR Pro|INI|
IRC log|ISPC|Idris|Ignore List|ImageJ Macro|Imba|Inform 7|Ink|Inno Setup|Io|Ioke|Isabelle|Isabelle ROOT|J|
JAR Manifest|JCL|JFlex|JSON|JSON with Comments|JSON5|JSONLD|JSONiq|Jai|Janet|Jasmin|Java|Java Properties|
Java Server Pages|Java Template Engine|JavaScript|JavaScript+ERB|Jest Snapshot|JetBrains MPS|Jinja|Jison|
Jison Lex|Jolie|Jsonnet|Julia|Julia REPL|Jupyter Notebook|Just|KDL|KRL|Kaitai Struct|KakouneScript|
KerboScript|KiCad Layout|KiCad Legacy Layout|KiCad Schematic|Kickstart|Kit|Koka|Kotlin|Kusto|LFE|LLVM|
LOLCODE|LSL|LTspice Symbol|LabVIEW|Lark|Lasso|Latte|Lean|Lean 4|Leo|Less|Lex|LigoLANG|LilyPond|Limbo|
Linear Programming|Linker Script|Linux Kernel Module|Liquid|Literate Agda|Literate CoffeeScript|
Literate Haskell|LiveCode Script|LiveScript|Logos|Logtalk|LookML|LoomScript|Lua|Luau|M|M3U|M4|M4Sugar|
MATLAB|MAXScript|MDX|MLIR|MQL4|MQL5|MTML|MUF|Macaulay2|Makefile|Mako|Markdown|Marko|Mask|Maven POM|Max|
Mercury|Mermaid|Meson|Metal|Microsoft Developer Studio Project|Microsoft Visual Studio Solution|MiniD|
MiniYAML|MiniZinc|MiniZinc Data|Mint|Mirah|Modelica|Modula-2|Modula-3|Module Management System|Mojo|Monkey|
Monkey C|Moocode|MoonBit|MoonScript|Motoko|Motorola 68K Assembly|Move|Muse|Mustache|Myghty|NASL|NCL|NEON|NL|
NMODL|NPM Config|NSIS|NWScript|Nasal|Nearley|Nemerle|NetLinx|NetLinx+ERB|NetLogo|NewLisp|Nextflow|Nginx|
Nickel|Nim|Ninja|Nit|Nix|Noir|Nu|NumPy|Nunjucks|Nushell|OASv2-json|OASv2-yaml|OASv3-json|OASv3-yaml|OCaml|
OMNeT++ MSG|OMNeT++ NED|Oberon|ObjDump|Object Data Instance Notation|ObjectScript|Objective-C|Objective-C++|
Objective-J|Odin|Omgrofl|Opa|Opal|Open Policy Agent|OpenAPI Specification v2|OpenAPI Specification v3|
OpenCL|OpenEdge ABL|OpenQASM|OpenRC runscript|OpenSCAD|OpenStep Property List|OpenType Feature File|
Option List|Org|OverpassQL|Ox|Oxygene|Oz|P4|PDDL|PEG.js|PHP|PLSQL|PLpgSQL|POV-Ray SDL|Pact|Pan|Papyrus|
Parrot|Parrot Assembly|Parrot Internal Representation|Pascal|Pawn|Pep8|Perl|Pic|Pickle|PicoLisp|PigLatin|
Pike|Pip Requirements|Pkl|PlantUML|Pod|Pod 6|PogoScript|Polar|Pony|Portugol|PostCSS|PostScript|PowerBuilder|
PowerShell|Praat|Prisma|Processing|Procfile|Proguard|Prolog|Promela|Propeller Spin|Protocol Buffer|
Protocol Buffer Text Format|Public Key|Pug|Puppet|Pure Data|PureBasic|PureScript|Pyret|Python|
Python console|Python traceback|Q#|QML|QMake|Qt Script|Quake|QuakeC|QuickBASIC|R|RAML|RBS|RDoc|REALbasic|
REXX|RMarkdown|RON|ROS Interface|RPC|RPGLE|RPM Spec|RUNOFF|Racket|Ragel|Raku|Rascal|Raw token data|ReScript|
Readline Config|Reason|ReasonLIGO|Rebol|Record Jar|Red|Redcode|Redirect Rules|Regular Expression|Ren'Py|
RenderScript|Rez|Rich Text Format|Ring|Riot|RobotFramework|Roc|Rocq Prover|Roff|Roff Manpage|Rouge|
RouterOS Script|Ruby|Rust|SAS|SCSS|SELinux Policy|SMT|SPARQL|SQF|SQL|SQLPL|SRecode Template|SSH Config|STAR|
STL|STON|SVG|SWIG|Sage|Sail|SaltStack|Sass|Scala|Scaml|Scenic|Scheme|Scilab|Self|ShaderLab|Shell|
ShellCheck Config|ShellSession|Shen|Sieve|Simple File Verification|Singularity|Slang|Slash|Slice|Slim|Slint|
SmPL|Smali|Smalltalk|Smarty|Smithy|Snakemake|Solidity|Soong|SourcePawn|Spline Font Database|Squirrel|Stan|
Standard ML|Starlark|Stata|StringTemplate|Stylus|SubRip Text|SugarSS|SuperCollider|Survex data|Svelte|Sway|
Sweave|Swift|SystemVerilog|TI Program|TL-Verilog|TLA|TOML|TSPLIB data|TSQL|TSV|TSX|TXL|Tact|Talon|Tcl|Tcsh|
TeX|Tea|Terra|Terraform Template|Texinfo|Text|TextGrid|TextMate Properties|Textile|Thrift|Toit|Tor Config|
Tree-sitter Query|Turing|Turtle|Twig|Type Language|TypeScript|TypeSpec|Typst|Unified Parallel C|
Unity3D Asset|Unix Assembly|Uno|UnrealScript|Untyped Plutus Core|UrWeb|V|VBA|VBScript|VCL|VHDL|Vala|
Valve Data Format|Velocity Template Language|Vento|Verilog|Vim Help File|Vim Script|Vim Snippet|
Visual Basic .NET|Visual Basic 6.0|Volt|Vue|Vyper|WDL|WGSL|Wavefront Material|Wavefront Object|
Web Ontology Language|WebAssembly|WebAssembly Interface Type|WebIDL|WebVTT|Wget Config|Whiley|Wikitext|
Win32 Message File|Windows Registry Entries|Witcher Script|Wolfram Language|Wollok|
World of Warcraft Addon Data|Wren|X BitMap|X Font Directory Index|X PixMap|X10|XC|XCompose|XML|
XML Property List|XPages|XProc|XQuery|XS|XSLT|Xmake|Xojo|Xonsh|Xtend|YAML|YANG|YARA|YASnippet|Yacc|Yul|ZAP|
ZIL|Zeek|ZenScript|Zephir|Zig|Zimpl|Zmodel|cURL Config|crontab|desktop|dircolors|eC|edn|fish|hoon|iCalendar|
jq|kvlang|mIRC Script|mcfunction|mdsvex|mupad|nanorc|nesC|ooc|q|reStructuredText|robots.txt|sed|templ|vCard|
wisp|xBase
""".replace("\n", "").split("|"))
