use serde_json::{Value, json};

use super::*;

fn stream(o: &mut Outputs, name: &str, text: &str) {
    o.apply("stream", &json!({"name": name, "text": text}));
}

fn text_of(v: &Value) -> String {
    crate::ipynb::join_multiline(&v["text"]).unwrap_or_default()
}

#[test]
fn stream_chunks_merge_per_name_into_the_last_output() {
    let mut o = Outputs::new();
    stream(&mut o, "stdout", "a\n");
    stream(&mut o, "stdout", "b");
    stream(&mut o, "stdout", "c\n");
    stream(&mut o, "stderr", "warn\n");
    stream(&mut o, "stdout", "d\n");
    let out = o.to_nbformat();
    assert_eq!(out.len(), 3);
    assert_eq!(
        out[0],
        json!({"name": "stdout", "output_type": "stream", "text": ["a\n", "bc\n"]})
    );
    assert_eq!(text_of(&out[1]), "warn\n");
    assert_eq!(text_of(&out[2]), "d\n");
}

#[test]
fn carriage_return_overwrites_the_line_like_jupyter() {
    assert_eq!(remove_overwritten("abc\rX"), "Xbc");
    assert_eq!(remove_overwritten("abc\r\rXYZW"), "XYZW");
    assert_eq!(remove_overwritten("one\r\ntwo"), "one\ntwo");
    assert_eq!(remove_overwritten("done\rpending\r"), "pending\r");
    assert_eq!(remove_overwritten("a\nbb\rc\nd"), "a\ncb\nd");
}

#[test]
fn backspace_deletes_the_previous_character_but_not_a_newline() {
    assert_eq!(remove_overwritten("abc\x08X"), "abX");
    assert_eq!(remove_overwritten("ab\x08\x08X"), "X");
    assert_eq!(remove_overwritten("a\n\x08b"), "a\n\x08b");
}

#[test]
fn a_progress_bar_of_many_ticks_stays_one_short_line() {
    let mut o = Outputs::new();
    stream(&mut o, "stdout", "start\n");
    for i in 0..10_000 {
        stream(
            &mut o,
            "stderr",
            &format!("\r{:>3}%|{}|", i / 100, "#".repeat(i / 500)),
        );
    }
    stream(&mut o, "stderr", "\n");
    let out = o.to_nbformat();
    assert_eq!(out.len(), 2);
    assert_eq!(text_of(&out[1]), format!(" 99%|{}|\n", "#".repeat(19)));
    assert!(o.size() < 100, "size {}", o.size());
}

#[test]
fn a_carriage_return_split_across_chunks_still_rewrites() {
    let mut o = Outputs::new();
    stream(&mut o, "stdout", "10%\r");
    stream(&mut o, "stdout", "20%\r");
    assert_eq!(text_of(&o.to_nbformat()[0]), "20%\r");
    stream(&mut o, "stdout", "\n");
    assert_eq!(text_of(&o.to_nbformat()[0]), "20%\n");
}

#[test]
fn rich_outputs_are_nbformat_objects_with_split_text() {
    let mut o = Outputs::new();
    o.apply(
        "execute_result",
        &json!({"execution_count": 3, "data": {"text/plain": "a\nb", "application/json": {"k": [1]}},
                "metadata": {}}),
    );
    o.apply(
        "display_data",
        &json!({"data": {"image/png": "iVBORw0KGgo=\n", "text/plain": "<Figure>"},
                "metadata": {"image/png": {"width": 10}}, "transient": {}}),
    );
    let out = o.to_nbformat();
    assert_eq!(
        out[0],
        json!({"data": {"application/json": {"k": [1]}, "text/plain": ["a\n", "b"]},
               "execution_count": 3, "metadata": {}, "output_type": "execute_result"})
    );
    assert_eq!(out[1]["data"]["image/png"], json!("iVBORw0KGgo=\n"));
    assert_eq!(out[1]["metadata"]["image/png"]["width"], json!(10));
    assert!(out[1].get("transient").is_none());
}

#[test]
fn error_keeps_its_ansi_traceback_as_a_list() {
    let mut o = Outputs::new();
    o.apply(
        "error",
        &json!({"ename": "ValueError", "evalue": "bad", "traceback": ["\u{1b}[0;31mValueError\u{1b}[0m", "x"]}),
    );
    assert_eq!(
        o.to_nbformat()[0],
        json!({"ename": "ValueError", "evalue": "bad", "output_type": "error",
               "traceback": ["\u{1b}[0;31mValueError\u{1b}[0m", "x"]})
    );
}

#[test]
fn clear_output_wait_clears_at_the_next_output_only() {
    let mut o = Outputs::new();
    stream(&mut o, "stdout", "old\n");
    assert!(!o.apply("clear_output", &json!({"wait": true})));
    assert_eq!(o.len(), 1, "wait=True keeps the output until the next one");
    stream(&mut o, "stdout", "new\n");
    let out = o.to_nbformat();
    assert_eq!(out.len(), 1);
    assert_eq!(text_of(&out[0]), "new\n");

    assert!(o.apply("clear_output", &json!({"wait": false})));
    assert!(o.is_empty());
}

#[test]
fn update_display_data_rewrites_every_output_with_that_display_id() {
    let mut o = Outputs::new();
    let shown = |t: &str| json!({"data": {"text/plain": t}, "metadata": {}, "transient": {"display_id": "d1"}});
    o.apply("display_data", &shown("0%"));
    stream(&mut o, "stdout", "between\n");
    o.apply("display_data", &shown("0%"));
    let mark = o.revision();
    assert!(o.apply("update_display_data", &shown("100%")));
    let out = o.to_nbformat();
    assert_eq!(out.len(), 3);
    assert_eq!(out[0]["data"]["text/plain"], json!(["100%"]));
    assert_eq!(out[2]["data"]["text/plain"], json!(["100%"]));
    assert_eq!(o.changed_since(mark), vec![0, 2]);
    let unknown =
        json!({"data": {"text/plain": "x"}, "metadata": {}, "transient": {"display_id": "zz"}});
    assert!(!o.apply("update_display_data", &unknown));
}

#[test]
fn malformed_messages_are_ignored_without_panicking() {
    let mut o = Outputs::new();
    for (t, c) in [
        ("stream", json!("text")),
        ("stream", json!({"name": 3})),
        ("display_data", json!({"data": "x"})),
        ("update_display_data", json!({"data": {}})),
        ("status", json!({"execution_state": "idle"})),
    ] {
        assert!(!o.apply(t, &c), "{t} {c}");
    }
    o.apply("error", &json!({}));
    assert_eq!(o.to_nbformat()[0]["ename"], json!(""));
}

fn small() -> OutputLimits {
    OutputLimits {
        cap: 1000,
        keep_head: 100,
        keep_tail: 100,
    }
}

#[test]
fn past_the_cap_a_stream_keeps_head_and_tail_with_a_marker() {
    let mut o = Outputs::with_limits(small());
    for i in 0..1000 {
        stream(&mut o, "stdout", &format!("line {i:04}\n"));
    }
    assert!(o.truncated());
    let text = text_of(&o.to_nbformat()[0]);
    assert!(text.starts_with("line 0000\nline 0001\n"), "{text}");
    assert!(text.ends_with("line 0998\nline 0999\n"), "{text}");
    let marker = text
        .lines()
        .find(|l| l.contains("bytes of output dropped"))
        .unwrap_or_default();
    let dropped: u64 = marker
        .split_whitespace()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    assert_eq!(dropped as usize, 10 * 1000 - 100 - 100);
    assert!(o.size() < 400, "{}", o.size());
}

#[test]
fn past_the_cap_rich_outputs_are_dropped_with_one_note() {
    let mut o = Outputs::with_limits(small());
    let image = json!({"data": {"image/png": "A".repeat(400)}, "metadata": {}});
    for _ in 0..5 {
        o.apply("display_data", &image);
    }
    let out = o.to_nbformat();
    assert_eq!(out.len(), 3);
    let note = crate::ipynb::join_multiline(&out[2]["data"]["text/plain"]).unwrap_or_default();
    assert!(note.contains("3 output(s)"), "{note}");
    assert!(o.truncated());
    // An error still gets through: it is what the reader needs most.
    o.apply(
        "error",
        &json!({"ename": "E", "evalue": "v", "traceback": []}),
    );
    assert_eq!(o.to_nbformat()[3]["ename"], json!("E"));
}

#[test]
fn multibyte_text_is_cut_on_character_boundaries() {
    let mut o = Outputs::with_limits(small());
    for _ in 0..500 {
        stream(&mut o, "stdout", "é😀");
    }
    let text = text_of(&o.to_nbformat()[0]);
    assert!(text.contains("bytes of output dropped"));
}

#[test]
fn changed_since_reports_every_output_after_a_clear() {
    let mut o = Outputs::new();
    stream(&mut o, "stdout", "a");
    o.apply(
        "display_data",
        &json!({"data": {"text/plain": "x"}, "metadata": {}}),
    );
    let mark = o.revision();
    assert!(o.changed_since(mark).is_empty());
    stream(&mut o, "stdout", "b");
    assert_eq!(o.changed_since(mark), vec![2]);
    o.apply("clear_output", &json!({}));
    stream(&mut o, "stdout", "c");
    assert_eq!(o.changed_since(mark), vec![0]);
}

#[test]
fn one_chunk_larger_than_the_cap_still_keeps_its_head() {
    let mut o = Outputs::with_limits(small());
    let chunk: String = (0..300).map(|i| format!("{i:04}\n")).collect();
    stream(&mut o, "stdout", &chunk);
    let text = text_of(&o.to_nbformat()[0]);
    assert!(text.starts_with("0000\n0001\n"), "{text}");
    assert!(text.ends_with("0298\n0299\n"), "{text}");
    assert!(o.truncated());
}
