use std::path::PathBuf;

use serde_json::{Map, Value, json};

use super::*;

/// Where the nbformat test notebooks live (`NBLEDGER_FIXTURES` overrides).
fn fixtures_dir() -> PathBuf {
    std::env::var_os("NBLEDGER_FIXTURES").map_or_else(
        || {
            PathBuf::from(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/tests/fixtures/nbformat"
            ))
        },
        PathBuf::from,
    )
}

/// Where the Python-generated expected files live (`NBLEDGER_IPYNB_EXPECTED` overrides).
fn expected_dir() -> PathBuf {
    std::env::var_os("NBLEDGER_IPYNB_EXPECTED").map_or_else(
        || {
            PathBuf::from(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/tests/data/ipynb_expected"
            ))
        },
        PathBuf::from,
    )
}

const ACCEPTED: [&str; 10] = [
    "invalid_unique_cell_id.ipynb",
    "many_tracebacks.ipynb",
    "test4.5.ipynb",
    "test4.ipynb",
    "test4custom.ipynb",
    "test4docinfo.ipynb",
    "test4jupyter_metadata.ipynb",
    "test4jupyter_metadata_timings.ipynb",
    "test4plus.ipynb",
    "v4_5_no_cell_id.ipynb",
];

fn fixture(name: &str) -> Vec<u8> {
    let path = fixtures_dir().join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

fn parse_fixture(name: &str) -> RawNotebook {
    parse(&fixture(name)).unwrap_or_else(|e| panic!("{name} refused: {e}"))
}

fn refusal(name: &str) -> InvalidNotebook {
    match parse(&fixture(name)) {
        Ok(_) => panic!("{name} was accepted"),
        Err(e) => e,
    }
}

fn refusal_of(text: &str) -> String {
    match parse(text.as_bytes()) {
        Ok(_) => panic!("accepted: {text}"),
        Err(e) => e.reason,
    }
}

fn obj(v: Value) -> Map<String, Value> {
    match v {
        Value::Object(m) => m,
        other => panic!("not an object: {other}"),
    }
}

fn cell(cell_type: &str, source: &str) -> RawCell {
    RawCell {
        id: None,
        cell_type: cell_type.to_owned(),
        source: source.to_owned(),
        metadata: Map::new(),
        outputs: None,
        execution_count: None,
        attachments: None,
        extra: Map::new(),
    }
}

fn notebook(minor: u64, cells: Vec<RawCell>) -> RawNotebook {
    RawNotebook {
        nbformat: 4,
        nbformat_minor: minor,
        metadata: Map::new(),
        extra: Map::new(),
        cells,
    }
}

// ---- fixtures ---------------------------------------------------------------

#[test]
fn accepted_fixtures_render_exactly_as_python_writes_them() {
    for name in ACCEPTED {
        let nb = parse_fixture(name);
        let expected = std::fs::read(expected_dir().join(name)).unwrap();
        let written = render_notebook_full(&nb);
        assert!(
            written == expected,
            "{name} differs from Python's layout:\n{}",
            String::from_utf8_lossy(&written)
        );
        // What we write must read back to the same notebook.
        assert_eq!(parse(&written).unwrap(), nb, "{name} does not round-trip");
    }
}

#[test]
fn render_notebook_from_rendered_cells_equals_full_render() {
    for name in ACCEPTED {
        let nb = parse_fixture(name);
        let rendered: Vec<String> = nb.cells.iter().map(render_cell).collect();
        let refs: Vec<&str> = rendered.iter().map(String::as_str).collect();
        let header = RawNotebook {
            cells: Vec::new(),
            ..nb.clone()
        };
        assert_eq!(
            render_notebook(&header, &refs),
            render_notebook_full(&nb),
            "{name}"
        );
        for text in &rendered {
            assert!(text.starts_with("  {") && text.ends_with("  }"), "{name}");
        }
    }
}

#[test]
fn invalid_fixtures_are_refused_naming_the_problem() {
    // First cell is a markdown cell without "source" (the file also has a
    // "heading" cell and a "bad stream" output further on).
    assert_eq!(refusal("invalid.ipynb").reason, "cell 1 has no source");
    assert_eq!(
        refusal("invalid_cell_id.ipynb").reason,
        "cell 1 has an invalid id; ids must match ^[A-Za-z0-9_-]{1,64}$"
    );
    assert_eq!(
        refusal("no_min_version.ipynb").reason,
        "the notebook has no nbformat_minor version"
    );
    assert_eq!(
        refusal("v4_5_invalid_metadata.ipynb").reason,
        "notebook metadata \"kernelspec\" must be an object with string name and display_name"
    );
}

#[test]
fn later_problems_in_invalid_ipynb_are_caught_too() {
    let mut nb: Value = serde_json::from_slice(&fixture("invalid.ipynb")).unwrap();
    let cells = nb["cells"].as_array_mut().unwrap();
    cells.remove(0);
    let text = nb.to_string();
    assert_eq!(
        refusal_of(&text),
        "cell 2 has unknown cell_type \"heading\"; nbformat 4 allows code, markdown or raw"
    );
    nb["cells"].as_array_mut().unwrap().remove(1);
    assert_eq!(
        refusal_of(&nb.to_string()),
        "cell 2 output 1 has unknown output_type \"bad stream\"; nbformat 4 allows \
         stream, display_data, execute_result, error"
    );
}

#[test]
fn invalid_cell_metadata_types_are_refused() {
    let mut nb: Value = serde_json::from_slice(&fixture("v4_5_invalid_metadata.ipynb")).unwrap();
    nb["metadata"] = json!({});
    assert_eq!(
        refusal_of(&nb.to_string()),
        "cell 1 metadata \"name\" must be a non-empty string"
    );
    nb["cells"][0]["metadata"]["name"] = json!("n");
    assert_eq!(
        refusal_of(&nb.to_string()),
        "cell 1 metadata \"tags\" must be a list of distinct non-empty strings without commas"
    );
    nb["cells"][0]["metadata"]["tags"] = json!(["a", "b"]);
    assert_eq!(
        refusal_of(&nb.to_string()),
        "cell 1 metadata \"jupyter\" must be an object"
    );
    nb["cells"][0]["metadata"] = json!({"scrolled": "sometimes"});
    assert_eq!(
        refusal_of(&nb.to_string()),
        "cell 1 metadata \"scrolled\" must be true, false or \"auto\""
    );
    nb["cells"][0]["metadata"] = json!({"scrolled": "auto", "collapsed": true});
    nb["cells"][1]["metadata"]["jupyter"] = json!({});
    // Timestamps that are not ISO 8601 still pass: the schema only asks for strings.
    assert!(parse(nb.to_string().as_bytes()).is_ok());
    nb["cells"][1]["metadata"]["execution"]["iopub.status.busy"] = json!(5);
    assert_eq!(
        refusal_of(&nb.to_string()),
        "cell 2 metadata \"execution\" must be an object of strings"
    );
}

#[test]
fn fixture_details_are_kept() {
    let plus = parse_fixture("test4plus.ipynb");
    assert_eq!(plus.nbformat_minor, 99);
    assert_eq!(plus.extra.get("extra"), Some(&json!("future")));
    assert_eq!(plus.cells[0].extra.get("extra"), Some(&json!(5)));
    let future = &plus.cells[9];
    assert_eq!(future.cell_type, "future cell");
    assert!(!future.is_known_type());
    assert_eq!(future.extra.get("key"), Some(&json!("value")));
    assert_eq!(future.outputs, None);
    let outputs = plus.cells[10].outputs.as_ref().unwrap();
    assert_eq!(outputs[1]["output_type"], "future output");

    let dup = parse_fixture("invalid_unique_cell_id.ipynb");
    let ids: Vec<_> = dup.cells.iter().map(|c| c.id.as_deref()).collect();
    assert_eq!(ids, [Some("dup"), Some("dup")]);

    let no_ids = parse_fixture("v4_5_no_cell_id.ipynb");
    assert!(no_ids.cells.iter().all(|c| c.id.is_none()));

    let t4 = parse_fixture("test4.ipynb");
    assert_eq!(t4.nbformat_minor, 0);
    assert!(t4.cells.iter().all(|c| c.id.is_none()));
    let code = t4.cells.iter().find(|c| c.cell_type == "code").unwrap();
    assert!(code.outputs.is_some() && code.execution_count.is_some());
    assert!(
        t4.cells
            .iter()
            .filter(|c| c.cell_type != "code")
            .all(|c| c.outputs.is_none())
    );
}

// ---- a hand-made 4.4 notebook -----------------------------------------------

/// Jupyter's layout of a small 4.4 notebook touching every cell type, every
/// output type, attachments, an unknown cell key, and output text in both the
/// string and the list shape.
const MINIMAL_44: &str = r##"{
 "cells": [
  {
   "attachments": {
    "a.png": {
     "image/png": "iVBORw0KGgo="
    }
   },
   "cell_type": "markdown",
   "metadata": {},
   "source": [
    "# Title\n",
    "\n",
    "![a](attachment:a.png)"
   ]
  },
  {
   "cell_type": "code",
   "execution_count": 3,
   "metadata": {
    "collapsed": false,
    "tags": [
     "x"
    ]
   },
   "outputs": [
    {
     "name": "stdout",
     "output_type": "stream",
     "text": [
      "hi\n",
      "there\n"
     ]
    },
    {
     "data": {
      "application/json": {
       "a": [
        1,
        2.5,
        null
       ]
      },
      "text/plain": "{'a': [1, 2.5, None]}"
     },
     "execution_count": 3,
     "metadata": {},
     "output_type": "execute_result"
    },
    {
     "ename": "ValueError",
     "evalue": "bad",
     "output_type": "error",
     "traceback": [
      "\u001b[0;31mValueError\u001b[0m"
     ]
    }
   ],
   "someone_elses_key": {
    "z": 1,
    "a": 2
   },
   "source": [
    "print('hi')\n",
    "print('there')"
   ]
  },
  {
   "cell_type": "raw",
   "metadata": {
    "format": "text/x-rst"
   },
   "source": []
  }
 ],
 "metadata": {
  "kernelspec": {
   "display_name": "Python 3",
   "language": "python",
   "name": "python3"
  }
 },
 "nbformat": 4,
 "nbformat_minor": 4
}
"##;

#[test]
fn minimal_44_notebook_round_trips() {
    // The unknown key's inner object is deliberately unsorted above; Jupyter
    // would sort it, so the expected text is the input with that fixed.
    let expected = MINIMAL_44.replace("\"z\": 1,\n    \"a\": 2", "\"a\": 2,\n    \"z\": 1");
    let nb = parse(MINIMAL_44.as_bytes()).unwrap();
    assert_eq!(nb.nbformat_minor, 4);
    assert_eq!(nb.cells.len(), 3);
    let [md, code, raw] = &nb.cells[..] else {
        unreachable!()
    };
    assert_eq!(md.source, "# Title\n\n![a](attachment:a.png)");
    assert!(md.attachments.is_some() && md.execution_count.is_none());
    assert_eq!(code.source, "print('hi')\nprint('there')");
    assert_eq!(code.execution_count, Some(json!(3)));
    assert_eq!(code.extra.keys().collect::<Vec<_>>(), ["someone_elses_key"]);
    let outputs = code.outputs.as_ref().unwrap();
    assert_eq!(outputs[0]["text"], json!(["hi\n", "there\n"]));
    assert_eq!(
        outputs[1]["data"]["text/plain"],
        json!("{'a': [1, 2.5, None]}")
    );
    assert_eq!(raw.source, "");
    assert_eq!(
        String::from_utf8(render_notebook_full(&nb)).unwrap(),
        expected
    );
}

// ---- rendering cells ----------------------------------------------------------

#[test]
fn renders_a_code_cell() {
    let mut c = cell("code", "x = 1\nprint(x)\n");
    c.id = Some("abc".into());
    c.execution_count = Some(Value::Null);
    c.outputs = Some(vec![
        json!({"output_type": "stream", "name": "stdout", "text": "1\n"}),
    ]);
    let expected = r#"  {
   "cell_type": "code",
   "execution_count": null,
   "id": "abc",
   "metadata": {},
   "outputs": [
    {
     "name": "stdout",
     "output_type": "stream",
     "text": "1\n"
    }
   ],
   "source": [
    "x = 1\n",
    "print(x)\n"
   ]
  }"#;
    assert_eq!(render_cell(&c), expected);

    // A code cell built without outputs or count still writes both.
    let bare = cell("code", "");
    assert_eq!(
        render_cell(&bare),
        "  {\n   \"cell_type\": \"code\",\n   \"execution_count\": null,\n   \"metadata\": {},\n   \
         \"outputs\": [],\n   \"source\": []\n  }"
    );
}

#[test]
fn renders_markdown_without_code_fields() {
    let mut c = cell("markdown", "# Hi");
    c.outputs = Some(vec![]);
    c.execution_count = Some(json!(1));
    c.metadata = obj(json!({"tags": ["b", "a"], "jupyter": {"source_hidden": true}}));
    let expected = r##"  {
   "cell_type": "markdown",
   "metadata": {
    "jupyter": {
     "source_hidden": true
    },
    "tags": [
     "b",
     "a"
    ]
   },
   "source": [
    "# Hi"
   ]
  }"##;
    assert_eq!(render_cell(&c), expected);
}

#[test]
fn renders_raw_with_attachments_and_extra() {
    let mut c = cell("raw", "a\r\nb\rc");
    c.id = Some("r-1".into());
    c.attachments = Some(json!({}));
    c.extra = obj(json!({"zz": [], "aa": null, "source": "ignored", "id": "ignored"}));
    let expected = r#"  {
   "aa": null,
   "attachments": {},
   "cell_type": "raw",
   "id": "r-1",
   "metadata": {},
   "source": [
    "a\r\n",
    "b\r",
    "c"
   ],
   "zz": []
  }"#;
    assert_eq!(render_cell(&c), expected);
}

#[test]
fn opaque_future_cells_write_their_keys_verbatim() {
    let text = r#"{"cells": [{"cell_type": "slide", "metadata": {}, "source": "x", "deck": [1]}],
        "metadata": {}, "nbformat": 4, "nbformat_minor": 6}"#;
    let nb = parse(text.as_bytes()).unwrap();
    let c = &nb.cells[0];
    assert_eq!(
        (c.source.as_str(), c.extra.get("source")),
        ("x", Some(&json!("x")))
    );
    // The source keeps its string shape, since we do not know what it means here.
    assert_eq!(
        render_cell(c),
        "  {\n   \"cell_type\": \"slide\",\n   \"deck\": [\n    1\n   ],\n   \"metadata\": {},\n   \
         \"source\": \"x\"\n  }"
    );
    // The same cell in a 4.5 notebook is refused.
    assert_eq!(
        refusal_of(&text.replace("\"nbformat_minor\": 6", "\"nbformat_minor\": 5")),
        "cell 1 has unknown cell_type \"slide\"; nbformat 4 allows code, markdown or raw"
    );
}

#[test]
fn non_ascii_and_control_characters_are_written_as_python_does() {
    let mut c = cell(
        "markdown",
        "héllo ✓ 😀\n\tq\"u\\o\u{1}\u{1f}\u{7f}\u{2028}\u{8}\u{c}\rx\r\ny",
    );
    c.id = Some("md-1".into());
    c.metadata = obj(json!({"tags": ["a"]}));
    let mut nb = notebook(4, vec![c]);
    nb.metadata = obj(json!({"zeta": 1, "Älpha": {"ß": [], "b": {}}, "a": 0.5, "emoji😀": true}));
    // Generated with json.dumps(..., sort_keys=True, indent=1, ensure_ascii=False);
    // <DEL> and <LS> stand for the raw U+007F and U+2028 Python writes unescaped.
    let expected = r#"{
 "cells": [
  {
   "cell_type": "markdown",
   "id": "md-1",
   "metadata": {
    "tags": [
     "a"
    ]
   },
   "source": [
    "héllo ✓ 😀\n",
    "\tq\"u\\o\u0001\u001f<DEL><LS>",
    "\b\f",
    "\r",
    "x\r\n",
    "y"
   ]
  }
 ],
 "metadata": {
  "a": 0.5,
  "emoji😀": true,
  "zeta": 1,
  "Älpha": {
   "b": {},
   "ß": []
  }
 },
 "nbformat": 4,
 "nbformat_minor": 4
}
"#
    .replace("<DEL>", "\u{7f}")
    .replace("<LS>", "\u{2028}");
    let written = render_notebook_full(&nb);
    assert_eq!(String::from_utf8(written.clone()).unwrap(), expected);
    assert_eq!(parse(&written).unwrap(), nb);
}

#[test]
fn string_escaping_matches_serde_json_for_every_ascii_char() {
    // serde_json escapes exactly the set Python's json does with ensure_ascii=False.
    for b in 0u8..=0x7f {
        let s = format!("a{}b", b as char);
        let mut c = cell("raw", "");
        c.metadata.insert("k".into(), Value::String(s.clone()));
        let rendered = render_cell(&c);
        let expected = serde_json::to_string(&s).unwrap();
        assert!(
            rendered.contains(&format!("\"k\": {expected}\n")),
            "byte {b:#x}"
        );
    }
}

#[test]
fn numbers_are_written_as_read() {
    let text = r#"{"cells": [], "metadata": {"i": -3, "big": 18446744073709551615, "f": 1.0,
        "g": 0.1, "e": 1e300}, "nbformat": 4, "nbformat_minor": 5}"#;
    let written =
        String::from_utf8(render_notebook_full(&parse(text.as_bytes()).unwrap())).unwrap();
    let expected = "{\n \"cells\": [],\n \"metadata\": {\n  \"big\": 18446744073709551615,\n  \
                    \"e\": 1e+300,\n  \"f\": 1.0,\n  \"g\": 0.1,\n  \"i\": -3\n },\n \
                    \"nbformat\": 4,\n \"nbformat_minor\": 5\n}\n";
    assert_eq!(written, expected);
}

/// `(bits of an f64, Python's json.dumps of it)`, generated with Python 3.11.
const PYTHON_FLOATS: [(u64, &str); 60] = [
    (0x3e7ad7f29abcaf48, "1e-07"),
    (0x3ee4f8b588e368f1, "1e-05"),
    (0x3f1a36e2eb1c432d, "0.0001"),
    (0x3f202c9dedbc309d, "0.0001234"),
    (0x430c6bf526340000, "1000000000000000.0"),
    (0x4341c37937e08000, "1e+16"),
    (0x437b69b4ba630f35, "1.2345678901234568e+17"),
    (0x7e37e43c8800759c, "1e+300"),
    (0x01b01297d23ab683, "1.5e-300"),
    (0x0000000000000001, "5e-324"),
    (0x8000000000000000, "-0.0"),
    (0x0000000000000000, "0.0"),
    (0x3fb999999999999a, "0.1"),
    (0x4480f0cf064dd592, "1e+22"),
    (0x3df12e0be826d695, "2.5e-10"),
    (0x7fefffffffffffff, "1.7976931348623157e+308"),
    (0x0010000000000000, "2.2250738585072014e-308"),
    (0x4059000000000000, "100.0"),
    (0xbff8000000000000, "-1.5"),
    (0x3fd3333333333333, "0.3"),
    (0x3fd5555555555555, "0.3333333333333333"),
    (0x4340000000000000, "9007199254740992.0"),
    (0x41678c2000000000, "12345600.0"),
    (0xbee4f8b588e368f1, "-1e-05"),
    (0x3f505e1c15097c81, "0.000999"),
    (0x3dd89f250454edaa, "8.957307212181266e-11"),
    (0x3ec9529614d657f7, "3.0186894607970752e-06"),
    (0x3a7fd1455f0d105a, "6.425485839826166e-27"),
    (0xbad4c89c3363fe1c, "-2.686221661748289e-25"),
    (0x3a503ae48f5bbaf1, "8.194081262862046e-28"),
    (0xbc65544999b94733, "-9.250086831160304e-18"),
    (0xbf25735fbc2ccb54, "-0.00016365569725848106"),
    (0xbccd7e0325cd05cd, "-8.185739733122699e-16"),
    (0xbf4ce4e5f52163b2, "-0.0008817789878420217"),
    (0xc126f61827c86327, "-752396.0777007089"),
    (0x3c7e1ecb072a1bba, "2.6125183146347418e-17"),
    (0x416114285b2c27e3, "8954178.849140113"),
    (0x4104e256c32290f3, "171082.84528077356"),
    (0x3a52ddccf1beab90, "9.525102111858402e-28"),
    (0x39ecbb8637c8c026, "1.1332979587418523e-29"),
    (0xbb496f46f7247e68, "-4.2078142733664747e-23"),
    (0x3b5897d5f9b9a01f, "8.137177106428494e-23"),
    (0xc11760f1683d3ebb, "-383036.3517961313"),
    (0x4468aa7ca87bf99e, "3.6400538952240915e+21"),
    (0x3ac94107f170c7f8, "1.632003273249325e-25"),
    (0xc1f7416340841d34, "-6242579464.25713"),
    (0x3abd8d699ea1dfd5, "9.548893141911562e-26"),
    (0x3a597fb86e5e72b1, "1.2873658626677332e-27"),
    (0xc1c186b6c72e409e, "-588082574.361347"),
    (0x426276af610276d7, "634404931603.7137"),
    (0x2835f977c6f87718, "5.576996205710768e-115"),
    (0x4af3b0e87731af10, "1.1787672633797333e+53"),
    (0x3a01f218ec66a787, "2.831331093647381e-29"),
    (0x265ec3d65c90a958, "7.271743784907204e-124"),
    (0x65ae3a133f98e277, "6.271340521604977e+181"),
    (0x5978a64a2e05319a, "1.018421560976591e+123"),
    (0x1f3e8dfdc7a2ea20, "3.4772799323013943e-158"),
    (0x4986b75714f4733f, "1.6210802403613625e+46"),
    (0x4339a3904cdd2055, "7216714577944661.0"),
    (0x700481637ebff206, "3.979380301263351e+231"),
];

#[test]
fn floats_are_written_as_python_repr() {
    for (bits, python) in PYTHON_FLOATS {
        let value = Value::from(f64::from_bits(bits));
        let mut c = cell("raw", "");
        c.metadata.insert("f".into(), value.clone());
        let rendered = render_cell(&c);
        assert!(
            rendered.contains(&format!("\"f\": {python}\n")),
            "{python}: {rendered}"
        );
    }
}

/// serde_json without its `float_roundtrip` feature reads some floats one unit
/// in the last place off (`1.5e-300` becomes `1.4999999999999998e-300`), which
/// would change another tool's numbers on a round trip.
#[test]
fn floats_survive_a_round_trip() {
    for (bits, python) in PYTHON_FLOATS {
        let back: Value = serde_json::from_str(python).unwrap();
        assert_eq!(back.as_f64().map(f64::to_bits), Some(bits), "{python}");
    }
}

#[test]
fn extra_keys_never_shadow_named_fields() {
    let mut nb = notebook(5, vec![]);
    nb.extra = obj(json!({"nbformat": 3, "cells": 1, "zzz": "kept"}));
    assert_eq!(
        String::from_utf8(render_notebook_full(&nb)).unwrap(),
        "{\n \"cells\": [],\n \"metadata\": {},\n \"nbformat\": 4,\n \"nbformat_minor\": 5,\n \
         \"zzz\": \"kept\"\n}\n"
    );
}

// ---- validation -----------------------------------------------------------------

#[test]
fn json_syntax_errors_carry_position() {
    let e = parse(b"{\n \"cells\": [\n  }").unwrap_err();
    assert_eq!((e.line, e.column), (Some(3), Some(3)));
    assert!(
        e.reason.starts_with("the file is not valid JSON: "),
        "{}",
        e.reason
    );
    assert!(
        parse(b"")
            .unwrap_err()
            .reason
            .starts_with("the file is not valid JSON")
    );
    assert!(
        parse(b"\xEF\xBB\xBF{}")
            .unwrap_err()
            .reason
            .contains("byte order mark")
    );
}

#[test]
fn top_level_problems_are_named() {
    assert_eq!(
        refusal_of("[]"),
        "the file is not a JSON object at the top level"
    );
    assert_eq!(refusal_of("{}"), "the notebook has no nbformat version");
    assert_eq!(
        refusal_of(r#"{"nbformat": 3, "nbformat_minor": 0, "worksheets": []}"#),
        "nbformat 3 is not supported; only nbformat 4.x"
    );
    assert_eq!(
        refusal_of(r#"{"nbformat": 5, "nbformat_minor": 0}"#),
        "nbformat 5 is not supported; only nbformat 4.x"
    );
    assert_eq!(
        refusal_of(r#"{"nbformat": "4", "nbformat_minor": 0}"#),
        "the notebook's nbformat is not a non-negative integer"
    );
    assert_eq!(
        refusal_of(r#"{"nbformat": 4, "nbformat_minor": 5, "cells": []}"#),
        "the notebook has no metadata"
    );
    assert_eq!(
        refusal_of(r#"{"nbformat": 4, "nbformat_minor": 5, "metadata": {}}"#),
        "the notebook has no cells list"
    );
    assert_eq!(
        refusal_of(r#"{"nbformat": 4, "nbformat_minor": 5, "metadata": {}, "cells": {}}"#),
        "the notebook's cells is not a list"
    );
}

/// A 4.5 notebook whose single cell is `cell` (JSON text).
fn with_cell(cell: &str) -> String {
    format!(r#"{{"nbformat": 4, "nbformat_minor": 5, "metadata": {{}}, "cells": [{cell}]}}"#)
}

#[test]
fn cell_problems_are_named() {
    let cases = [
        ("[]", "cell 1 is not a JSON object"),
        (
            r#"{"metadata": {}, "source": ""}"#,
            "cell 1 has no cell_type",
        ),
        (
            r#"{"cell_type": "markdown", "source": ""}"#,
            "cell 1 has no metadata",
        ),
        (
            r#"{"cell_type": "markdown", "metadata": [], "source": ""}"#,
            "cell 1 metadata is not an object",
        ),
        (
            r#"{"cell_type": "markdown", "metadata": {}, "source": ["a", 1]}"#,
            "cell 1 source is not a string or a list of strings",
        ),
        (
            r#"{"cell_type": "markdown", "metadata": {}, "source": "", "id": 7}"#,
            "cell 1 has an invalid id; ids must match ^[A-Za-z0-9_-]{1,64}$",
        ),
        (
            r#"{"cell_type": "code", "metadata": {}, "source": "", "execution_count": null}"#,
            "cell 1 is a code cell without outputs",
        ),
        (
            r#"{"cell_type": "code", "metadata": {}, "source": "", "outputs": []}"#,
            "cell 1 is a code cell without execution_count",
        ),
        (
            r#"{"cell_type": "code", "metadata": {}, "source": "", "outputs": [],
                "execution_count": -1}"#,
            "cell 1 execution_count is not null or a non-negative integer",
        ),
        (
            r#"{"cell_type": "code", "metadata": {}, "source": "", "outputs": [3],
                "execution_count": null}"#,
            "cell 1 output 1 is not a JSON object",
        ),
        (
            r#"{"cell_type": "code", "metadata": {}, "source": "", "outputs": [{}],
                "execution_count": null}"#,
            "cell 1 output 1 has no output_type",
        ),
        (
            r#"{"cell_type": "code", "metadata": {}, "source": "", "execution_count": null,
                "outputs": [{"output_type": "stream", "name": "stdout"}]}"#,
            "cell 1 output 1 (stream) has no text",
        ),
        (
            r#"{"cell_type": "code", "metadata": {}, "source": "", "execution_count": null,
                "outputs": [{"output_type": "display_data", "metadata": {},
                             "data": {"text/plain": 5}}]}"#,
            "cell 1 output 1 (display_data) data must be a MIME bundle",
        ),
        (
            r#"{"cell_type": "raw", "metadata": {"tags": ["a", "a"]}, "source": ""}"#,
            "cell 1 metadata \"tags\" must be a list of distinct non-empty strings without commas",
        ),
        (
            r#"{"cell_type": "raw", "metadata": {"tags": ["a,b"]}, "source": ""}"#,
            "cell 1 metadata \"tags\" must be a list of distinct non-empty strings without commas",
        ),
        (
            r#"{"cell_type": "raw", "metadata": {"format": 1}, "source": ""}"#,
            "cell 1 metadata \"format\" must be a string",
        ),
        (
            r#"{"cell_type": "markdown", "metadata": {}, "source": "",
                "attachments": {"a.png": {"image/png": 1}}}"#,
            "cell 1 attachment \"a.png\" is not a MIME bundle",
        ),
    ];
    for (cell, reason) in cases {
        assert_eq!(refusal_of(&with_cell(cell)), reason, "{cell}");
    }
}

#[test]
fn permissive_where_nbformat_is_or_the_importer_repairs() {
    let ok = [
        // Missing id, unknown keys, JSON MIME data of any shape, outputs on markdown.
        r#"{"cell_type": "markdown", "metadata": {}, "source": "", "mine": 1, "outputs": 2}"#,
        r#"{"cell_type": "code", "metadata": {"scrolled": "auto"}, "source": "",
            "execution_count": 0, "outputs": [{"output_type": "display_data", "metadata": {},
            "data": {"application/vnd.x+json": {"a": 1}, "application/json": 5}}]}"#,
        // The schema's jupyter.source_hidden rule is never enforced by nbformat.
        r#"{"cell_type": "code", "metadata": {"jupyter": {"source_hidden": "x"}}, "source": "",
            "execution_count": null, "outputs": []}"#,
    ];
    for cell in ok {
        let nb = parse(with_cell(cell).as_bytes()).unwrap_or_else(|e| panic!("{cell}: {e}"));
        assert_eq!(parse(&render_notebook_full(&nb)).unwrap(), nb);
    }
    let md = parse(with_cell(ok[0]).as_bytes()).unwrap();
    assert_eq!(md.cells[0].extra.get("outputs"), Some(&json!(2)));
    assert!(render_cell(&md.cells[0]).contains("\"outputs\": 2"));
}

#[test]
fn unknown_output_types_only_from_the_future() {
    let cell = r#"{"cell_type": "code", "metadata": {}, "source": "", "execution_count": null,
                   "outputs": [{"output_type": "hologram", "beam": [1]}]}"#;
    assert!(refusal_of(&with_cell(cell)).contains("unknown output_type \"hologram\""));
    let future = with_cell(cell).replace("\"nbformat_minor\": 5", "\"nbformat_minor\": 6");
    let nb = parse(future.as_bytes()).unwrap();
    assert_eq!(nb.cells[0].outputs.as_ref().unwrap()[0]["beam"], json!([1]));
}

#[test]
fn long_names_are_cut_in_messages() {
    let long = "x".repeat(500);
    let reason = refusal_of(&with_cell(&format!(
        r#"{{"cell_type": "{long}", "metadata": {{}}, "source": ""}}"#
    )));
    assert!(reason.len() < 200, "{reason}");
}

// ---- lines and ids ----------------------------------------------------------------

#[test]
fn split_lines_follows_python_splitlines() {
    assert_eq!(split_lines(""), Vec::<&str>::new());
    assert_eq!(split_lines("a"), ["a"]);
    assert_eq!(split_lines("a\n"), ["a\n"]);
    assert_eq!(split_lines("a\nb"), ["a\n", "b"]);
    assert_eq!(split_lines("\n\n"), ["\n", "\n"]);
    assert_eq!(split_lines("a\r\nb\rc\n"), ["a\r\n", "b\r", "c\n"]);
    assert_eq!(split_lines("\r\r\n\n"), ["\r", "\r\n", "\n"]);
    assert_eq!(split_lines("a\r"), ["a\r"]);
    assert_eq!(
        split_lines("1\x0b2\x0c3\x1c4\x1d5\x1e6\u{85}7\u{2028}8\u{2029}9"),
        [
            "1\x0b",
            "2\x0c",
            "3\x1c",
            "4\x1d",
            "5\x1e",
            "6\u{85}",
            "7\u{2028}",
            "8\u{2029}",
            "9"
        ]
    );
    // Not line breaks for Python: tab, NUL, U+001F, DEL.
    assert_eq!(split_lines("a\tb\0c\x1fd\x7f"), ["a\tb\0c\x1fd\x7f"]);
    assert_eq!(split_lines("é\n😀"), ["é\n", "😀"]);
}

#[test]
fn join_multiline_accepts_strings_and_string_lists() {
    assert_eq!(join_multiline(&json!("a\nb")), Some("a\nb".into()));
    assert_eq!(join_multiline(&json!(["a\n", "b"])), Some("a\nb".into()));
    assert_eq!(join_multiline(&json!([])), Some(String::new()));
    assert_eq!(join_multiline(&json!(["a", 1])), None);
    assert_eq!(join_multiline(&json!(null)), None);
}

#[test]
fn cell_id_rule() {
    assert!(valid_cell_id("a"));
    assert!(valid_cell_id("Az09_-"));
    assert!(valid_cell_id(&"x".repeat(64)));
    assert!(!valid_cell_id(&"x".repeat(65)));
    assert!(!valid_cell_id(""));
    assert!(!valid_cell_id("$illegal_chars"));
    assert!(!valid_cell_id("abc\n"));
    assert!(!valid_cell_id("é"));
}

#[test]
fn frame_plus_cells_is_the_whole_file() {
    for name in ["test4.5.ipynb", "test4plus.ipynb", "test4custom.ipynb"] {
        let nb = parse_fixture(name);
        let cells: Vec<String> = nb.cells.iter().map(render_cell).collect();
        let (prefix, suffix) = render_frame(&nb);
        let streamed = format!("{prefix}{}{suffix}", cells.join(",\n"));
        assert_eq!(streamed.into_bytes(), render_notebook_full(&nb), "{name}");
    }
}
