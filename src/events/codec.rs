//! The bytes of an event on disk.
//!
//! A record is a bincode 1.3 [`Envelope`] that never changes shape: it
//! carries the fields every reader needs (version, time, client, operation,
//! paths, cells), the hash of the previous record, and a `body` whose layout
//! is chosen by `schema`. bincode cannot skip unknown fields, so any change
//! to a body struct means a new schema number, a new `BodyVn`, and an
//! upcast in [`decode`]; old records stay readable forever. Golden-byte
//! tests below pin every schema.
//!
//! Texts longer than [`INLINE_MAX`] bytes (sources, outputs, metadata) are
//! stored once in a content-addressed blob tree and referenced by blake3
//! hash, so re-recording the same content (a source's `before` being the
//! previous `after`, a snapshot, a copy) costs 32 bytes.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::{Cell, CellType, Change, Event, FileWrite, Hash, Header};

/// Store format: the envelope layout. A reader refuses a higher one.
pub const FORMAT: u8 = 1;
/// The body schema this build writes.
pub const SCHEMA: u16 = 1;
/// Texts up to this many bytes are stored inline in the record.
pub const INLINE_MAX: usize = 256;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
struct Envelope {
    format: u8,
    schema: u16,
    version: u64,
    timestamp_ms: i64,
    client_name: String,
    operation: String,
    paths: Vec<String>,
    cell_ids: Vec<String>,
    prev_hash: Hash,
    body: Vec<u8>,
}

/// The header fields of a record, decoded without touching the body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordHead {
    pub version: u64,
    pub timestamp_ms: i64,
    pub client_name: String,
    pub operation: String,
    pub paths: Vec<String>,
    pub cell_ids: Vec<String>,
    pub prev_hash: Hash,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
enum Text {
    Inline(String),
    Blob(Hash),
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
struct HeaderV1 {
    nbformat: u64,
    nbformat_minor: u64,
    metadata: Text,
    extra: Text,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
struct CellV1 {
    id: String,
    cell_type: String,
    source: Text,
    metadata: Text,
    outputs: Option<Text>,
    execution_count: Option<String>,
    attachments: Option<Text>,
    extra: Text,
}

// Variant order is part of the format: append only. Variants differ in
// size, but boxing would change nothing on disk and these are transient.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
enum ChangeV1 {
    NotebookCreated {
        path: String,
        header: HeaderV1,
    },
    HeaderSet {
        path: String,
        before: HeaderV1,
        after: HeaderV1,
    },
    CellInserted {
        path: String,
        index: u32,
        cell: CellV1,
    },
    SourceSet {
        path: String,
        cell_id: String,
        before: Text,
        after: Text,
    },
    CellReplaced {
        path: String,
        before: CellV1,
        after: CellV1,
    },
    CellDeleted {
        path: String,
        index: u32,
        after_cell_id: Option<String>,
        cell: CellV1,
    },
    CellMoved {
        path: String,
        cell_id: String,
        from: u32,
        to: u32,
    },
    LockAcquired {
        path: String,
        cell_id: String,
        owner: String,
        acquired_at: i64,
        expires_at: i64,
    },
    LockReleased {
        path: String,
        cell_id: String,
        owner: String,
        forced: bool,
    },
    Rejected {
        path: String,
        cell_id: String,
        holder: String,
        acquired_at: i64,
        expires_at: i64,
    },
    SnapshotTaken {
        path: String,
        name: String,
        hash: Hash,
        description: Option<String>,
        header: HeaderV1,
        cells: Vec<CellV1>,
    },
    CellCopied {
        path: String,
        index: u32,
        cell: CellV1,
        from_path: String,
        from_id: String,
    },
    CellMovedOut {
        path: String,
        cell_id: String,
        index: u32,
        to_path: String,
        to_id: String,
    },
    CellMovedIn {
        path: String,
        index: u32,
        cell: CellV1,
        from_path: String,
        from_id: String,
    },
    RunStarted {
        path: String,
        run_id: String,
        cell_id: Option<String>,
        source: Text,
        source_version: u64,
        kernel_name: String,
    },
    RunOutputs {
        path: String,
        run_id: String,
        cell_id: Option<String>,
        outputs: Text,
        execution_count: Option<u64>,
        truncated: bool,
    },
    RunFinished {
        path: String,
        run_id: String,
        cell_id: Option<String>,
        status: String,
        execution_count: Option<u64>,
        started_at: Option<i64>,
        duration_ms: Option<u64>,
        outputs: Text,
        truncated: bool,
        reason: Option<String>,
    },
    KernelAction {
        path: String,
        kernel_name: String,
        action: String,
        run_ids: Vec<String>,
    },
    SnapshotDeleted {
        path: String,
        name: String,
    },
    NotebookRenamed {
        path: String,
        to: String,
    },
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
struct FileWriteV1 {
    path: String,
    before: Option<Hash>,
    after: Hash,
    written: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
struct BodyV1 {
    overrode_locks: Vec<(String, String)>,
    request_id: Option<String>,
    result: String,
    summary: String,
    changes: Vec<ChangeV1>,
    files: Vec<FileWriteV1>,
}

/// Why a record could not be read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DecodeError {
    #[error("record is not a valid envelope: {0}")]
    Envelope(String),
    #[error(
        "record uses store format {0}, newer than this nbledger understands ({FORMAT}); upgrade nbledger"
    )]
    NewerFormat(u8),
    #[error(
        "record uses event schema {0}, newer than this nbledger understands ({SCHEMA}); upgrade nbledger"
    )]
    NewerSchema(u16),
    #[error("record body does not decode: {0}")]
    Body(String),
    #[error("record references blob {0} which is missing from the store")]
    MissingBlob(String),
}

/// Encodes `event` as a record chained after `prev_hash`. `put_blob` stores
/// a large text and returns its hash (it is called with the text's bytes).
pub fn encode(event: &Event, prev_hash: &Hash, put_blob: &mut dyn FnMut(&[u8]) -> Hash) -> Vec<u8> {
    let mut text = |s: &str| -> Text {
        if s.len() <= INLINE_MAX {
            Text::Inline(s.to_owned())
        } else {
            Text::Blob(put_blob(s.as_bytes()))
        }
    };
    let body = BodyV1 {
        overrode_locks: event.overrode_locks.clone(),
        request_id: event.request_id.clone(),
        result: event.result.clone(),
        summary: event.summary.clone(),
        changes: event
            .changes
            .iter()
            .map(|c| change_v1(c, &mut text))
            .collect(),
        files: event
            .files
            .iter()
            .map(|f| FileWriteV1 {
                path: f.path.clone(),
                before: f.before,
                after: f.after,
                written: f.written,
            })
            .collect(),
    };
    let envelope = Envelope {
        format: FORMAT,
        schema: SCHEMA,
        version: event.version,
        timestamp_ms: event.timestamp_ms,
        client_name: event.client_name.clone(),
        operation: event.operation.clone(),
        paths: event.paths.clone(),
        cell_ids: event.cell_ids.clone(),
        prev_hash: *prev_hash,
        // Serialising owned plain data into a Vec cannot fail.
        body: bincode::serialize(&body).unwrap_or_default(),
    };
    bincode::serialize(&envelope).unwrap_or_default()
}

/// Decodes only the envelope fields.
pub fn decode_head(bytes: &[u8]) -> Result<RecordHead, DecodeError> {
    let env = envelope(bytes)?;
    Ok(RecordHead {
        version: env.version,
        timestamp_ms: env.timestamp_ms,
        client_name: env.client_name,
        operation: env.operation,
        paths: env.paths,
        cell_ids: env.cell_ids,
        prev_hash: env.prev_hash,
    })
}

/// Decodes a whole record; `get_blob` resolves blob references.
pub fn decode(
    bytes: &[u8],
    get_blob: &dyn Fn(&Hash) -> Option<Vec<u8>>,
) -> Result<(Event, Hash), DecodeError> {
    let env = envelope(bytes)?;
    let body: BodyV1 = match env.schema {
        1 => bincode::deserialize(&env.body).map_err(|e| DecodeError::Body(e.to_string()))?,
        n => return Err(DecodeError::NewerSchema(n)),
    };
    let text = |t: Text| -> Result<String, DecodeError> {
        match t {
            Text::Inline(s) => Ok(s),
            Text::Blob(h) => {
                let bytes = get_blob(&h).ok_or_else(|| DecodeError::MissingBlob(hex(&h)))?;
                String::from_utf8(bytes).map_err(|e| DecodeError::Body(e.to_string()))
            }
        }
    };
    let mut changes = Vec::with_capacity(body.changes.len());
    for c in body.changes {
        changes.push(change_from_v1(c, &text)?);
    }
    let event = Event {
        version: env.version,
        timestamp_ms: env.timestamp_ms,
        client_name: env.client_name,
        operation: env.operation,
        paths: env.paths,
        cell_ids: env.cell_ids,
        overrode_locks: body.overrode_locks,
        request_id: body.request_id,
        result: body.result,
        summary: body.summary,
        changes,
        files: body
            .files
            .into_iter()
            .map(|f| FileWrite {
                path: f.path,
                before: f.before,
                after: f.after,
                written: f.written,
            })
            .collect(),
    };
    Ok((event, env.prev_hash))
}

fn envelope(bytes: &[u8]) -> Result<Envelope, DecodeError> {
    // The first byte is the format; check it before trusting the layout.
    match bytes.first() {
        Some(&f) if f > FORMAT => return Err(DecodeError::NewerFormat(f)),
        _ => {}
    }
    bincode::deserialize(bytes).map_err(|e| DecodeError::Envelope(e.to_string()))
}

/// Lowercase hex of a hash.
pub fn hex(h: &Hash) -> String {
    blake3::Hash::from_bytes(*h).to_hex().to_string()
}

fn header_v1(h: &Header, text: &mut dyn FnMut(&str) -> Text) -> HeaderV1 {
    HeaderV1 {
        nbformat: h.nbformat,
        nbformat_minor: h.nbformat_minor,
        metadata: text(&h.metadata),
        extra: text(&h.extra),
    }
}

fn cell_v1(c: &Cell, text: &mut dyn FnMut(&str) -> Text) -> CellV1 {
    CellV1 {
        id: c.id.clone(),
        cell_type: c.cell_type.as_str().to_owned(),
        source: text(&c.source),
        metadata: text(&c.metadata),
        outputs: c.outputs.as_deref().map(&mut *text),
        execution_count: c.execution_count.clone(),
        attachments: c.attachments.as_deref().map(&mut *text),
        extra: text(&c.extra),
    }
}

fn change_v1(c: &Change, text: &mut dyn FnMut(&str) -> Text) -> ChangeV1 {
    match c {
        Change::NotebookCreated { path, header } => ChangeV1::NotebookCreated {
            path: path.clone(),
            header: header_v1(header, text),
        },
        Change::HeaderSet {
            path,
            before,
            after,
        } => ChangeV1::HeaderSet {
            path: path.clone(),
            before: header_v1(before, text),
            after: header_v1(after, text),
        },
        Change::CellInserted { path, index, cell } => ChangeV1::CellInserted {
            path: path.clone(),
            index: *index,
            cell: cell_v1(cell, text),
        },
        Change::SourceSet {
            path,
            cell_id,
            before,
            after,
        } => ChangeV1::SourceSet {
            path: path.clone(),
            cell_id: cell_id.clone(),
            before: text(before),
            after: text(after),
        },
        Change::CellReplaced {
            path,
            before,
            after,
        } => ChangeV1::CellReplaced {
            path: path.clone(),
            before: cell_v1(before, text),
            after: cell_v1(after, text),
        },
        Change::CellDeleted {
            path,
            index,
            after_cell_id,
            cell,
        } => ChangeV1::CellDeleted {
            path: path.clone(),
            index: *index,
            after_cell_id: after_cell_id.clone(),
            cell: cell_v1(cell, text),
        },
        Change::CellMoved {
            path,
            cell_id,
            from,
            to,
        } => ChangeV1::CellMoved {
            path: path.clone(),
            cell_id: cell_id.clone(),
            from: *from,
            to: *to,
        },
        Change::LockAcquired {
            path,
            cell_id,
            owner,
            acquired_at,
            expires_at,
        } => ChangeV1::LockAcquired {
            path: path.clone(),
            cell_id: cell_id.clone(),
            owner: owner.clone(),
            acquired_at: *acquired_at,
            expires_at: *expires_at,
        },
        Change::LockReleased {
            path,
            cell_id,
            owner,
            forced,
        } => ChangeV1::LockReleased {
            path: path.clone(),
            cell_id: cell_id.clone(),
            owner: owner.clone(),
            forced: *forced,
        },
        Change::Rejected {
            path,
            cell_id,
            holder,
            acquired_at,
            expires_at,
        } => ChangeV1::Rejected {
            path: path.clone(),
            cell_id: cell_id.clone(),
            holder: holder.clone(),
            acquired_at: *acquired_at,
            expires_at: *expires_at,
        },
        Change::SnapshotTaken {
            path,
            name,
            hash,
            description,
            header,
            cells,
        } => ChangeV1::SnapshotTaken {
            path: path.clone(),
            name: name.clone(),
            hash: *hash,
            description: description.clone(),
            header: header_v1(header, text),
            cells: cells.iter().map(|c| cell_v1(c, text)).collect(),
        },
        Change::CellCopied {
            path,
            index,
            cell,
            from_path,
            from_id,
        } => ChangeV1::CellCopied {
            path: path.clone(),
            index: *index,
            cell: cell_v1(cell, text),
            from_path: from_path.clone(),
            from_id: from_id.clone(),
        },
        Change::CellMovedOut {
            path,
            cell_id,
            index,
            to_path,
            to_id,
        } => ChangeV1::CellMovedOut {
            path: path.clone(),
            cell_id: cell_id.clone(),
            index: *index,
            to_path: to_path.clone(),
            to_id: to_id.clone(),
        },
        Change::CellMovedIn {
            path,
            index,
            cell,
            from_path,
            from_id,
        } => ChangeV1::CellMovedIn {
            path: path.clone(),
            index: *index,
            cell: cell_v1(cell, text),
            from_path: from_path.clone(),
            from_id: from_id.clone(),
        },
        Change::RunStarted {
            path,
            run_id,
            cell_id,
            source,
            source_version,
            kernel_name,
        } => ChangeV1::RunStarted {
            path: path.clone(),
            run_id: run_id.clone(),
            cell_id: cell_id.clone(),
            source: text(source),
            source_version: *source_version,
            kernel_name: kernel_name.clone(),
        },
        Change::RunOutputs {
            path,
            run_id,
            cell_id,
            outputs,
            execution_count,
            truncated,
        } => ChangeV1::RunOutputs {
            path: path.clone(),
            run_id: run_id.clone(),
            cell_id: cell_id.clone(),
            outputs: text(outputs),
            execution_count: *execution_count,
            truncated: *truncated,
        },
        Change::RunFinished {
            path,
            run_id,
            cell_id,
            status,
            execution_count,
            started_at,
            duration_ms,
            outputs,
            truncated,
            reason,
        } => ChangeV1::RunFinished {
            path: path.clone(),
            run_id: run_id.clone(),
            cell_id: cell_id.clone(),
            status: status.clone(),
            execution_count: *execution_count,
            started_at: *started_at,
            duration_ms: *duration_ms,
            outputs: text(outputs),
            truncated: *truncated,
            reason: reason.clone(),
        },
        Change::KernelAction {
            path,
            kernel_name,
            action,
            run_ids,
        } => ChangeV1::KernelAction {
            path: path.clone(),
            kernel_name: kernel_name.clone(),
            action: action.clone(),
            run_ids: run_ids.clone(),
        },
        Change::SnapshotDeleted { path, name } => ChangeV1::SnapshotDeleted {
            path: path.clone(),
            name: name.clone(),
        },
        Change::NotebookRenamed { path, to } => ChangeV1::NotebookRenamed {
            path: path.clone(),
            to: to.clone(),
        },
    }
}

type TextFn<'a> = dyn Fn(Text) -> Result<String, DecodeError> + 'a;

fn header_from_v1(h: HeaderV1, text: &TextFn) -> Result<Header, DecodeError> {
    Ok(Header {
        nbformat: h.nbformat,
        nbformat_minor: h.nbformat_minor,
        metadata: text(h.metadata)?,
        extra: text(h.extra)?,
    })
}

fn cell_from_v1(c: CellV1, text: &TextFn) -> Result<Arc<Cell>, DecodeError> {
    Ok(Arc::new(Cell {
        id: c.id,
        cell_type: CellType::from_file(&c.cell_type),
        source: text(c.source)?,
        metadata: text(c.metadata)?,
        outputs: c.outputs.map(text).transpose()?,
        execution_count: c.execution_count,
        attachments: c.attachments.map(text).transpose()?,
        extra: text(c.extra)?,
    }))
}

fn change_from_v1(c: ChangeV1, text: &TextFn) -> Result<Change, DecodeError> {
    Ok(match c {
        ChangeV1::NotebookCreated { path, header } => Change::NotebookCreated {
            path,
            header: header_from_v1(header, text)?,
        },
        ChangeV1::HeaderSet {
            path,
            before,
            after,
        } => Change::HeaderSet {
            path,
            before: header_from_v1(before, text)?,
            after: header_from_v1(after, text)?,
        },
        ChangeV1::CellInserted { path, index, cell } => Change::CellInserted {
            path,
            index,
            cell: cell_from_v1(cell, text)?,
        },
        ChangeV1::SourceSet {
            path,
            cell_id,
            before,
            after,
        } => Change::SourceSet {
            path,
            cell_id,
            before: text(before)?,
            after: text(after)?,
        },
        ChangeV1::CellReplaced {
            path,
            before,
            after,
        } => Change::CellReplaced {
            path,
            before: cell_from_v1(before, text)?,
            after: cell_from_v1(after, text)?,
        },
        ChangeV1::CellDeleted {
            path,
            index,
            after_cell_id,
            cell,
        } => Change::CellDeleted {
            path,
            index,
            after_cell_id,
            cell: cell_from_v1(cell, text)?,
        },
        ChangeV1::CellMoved {
            path,
            cell_id,
            from,
            to,
        } => Change::CellMoved {
            path,
            cell_id,
            from,
            to,
        },
        ChangeV1::LockAcquired {
            path,
            cell_id,
            owner,
            acquired_at,
            expires_at,
        } => Change::LockAcquired {
            path,
            cell_id,
            owner,
            acquired_at,
            expires_at,
        },
        ChangeV1::LockReleased {
            path,
            cell_id,
            owner,
            forced,
        } => Change::LockReleased {
            path,
            cell_id,
            owner,
            forced,
        },
        ChangeV1::Rejected {
            path,
            cell_id,
            holder,
            acquired_at,
            expires_at,
        } => Change::Rejected {
            path,
            cell_id,
            holder,
            acquired_at,
            expires_at,
        },
        ChangeV1::SnapshotTaken {
            path,
            name,
            hash,
            description,
            header,
            cells,
        } => Change::SnapshotTaken {
            path,
            name,
            hash,
            description,
            header: header_from_v1(header, text)?,
            cells: cells
                .into_iter()
                .map(|c| cell_from_v1(c, text))
                .collect::<Result<_, _>>()?,
        },
        ChangeV1::CellCopied {
            path,
            index,
            cell,
            from_path,
            from_id,
        } => Change::CellCopied {
            path,
            index,
            cell: cell_from_v1(cell, text)?,
            from_path,
            from_id,
        },
        ChangeV1::CellMovedOut {
            path,
            cell_id,
            index,
            to_path,
            to_id,
        } => Change::CellMovedOut {
            path,
            cell_id,
            index,
            to_path,
            to_id,
        },
        ChangeV1::CellMovedIn {
            path,
            index,
            cell,
            from_path,
            from_id,
        } => Change::CellMovedIn {
            path,
            index,
            cell: cell_from_v1(cell, text)?,
            from_path,
            from_id,
        },
        ChangeV1::RunStarted {
            path,
            run_id,
            cell_id,
            source,
            source_version,
            kernel_name,
        } => Change::RunStarted {
            path,
            run_id,
            cell_id,
            source: text(source)?,
            source_version,
            kernel_name,
        },
        ChangeV1::RunOutputs {
            path,
            run_id,
            cell_id,
            outputs,
            execution_count,
            truncated,
        } => Change::RunOutputs {
            path,
            run_id,
            cell_id,
            outputs: text(outputs)?,
            execution_count,
            truncated,
        },
        ChangeV1::RunFinished {
            path,
            run_id,
            cell_id,
            status,
            execution_count,
            started_at,
            duration_ms,
            outputs,
            truncated,
            reason,
        } => Change::RunFinished {
            path,
            run_id,
            cell_id,
            status,
            execution_count,
            started_at,
            duration_ms,
            outputs: text(outputs)?,
            truncated,
            reason,
        },
        ChangeV1::KernelAction {
            path,
            kernel_name,
            action,
            run_ids,
        } => Change::KernelAction {
            path,
            kernel_name,
            action,
            run_ids,
        },
        ChangeV1::SnapshotDeleted { path, name } => Change::SnapshotDeleted { path, name },
        ChangeV1::NotebookRenamed { path, to } => Change::NotebookRenamed { path, to },
    })
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn sample() -> Event {
        let cell = Arc::new(Cell::new(
            "abcd1234".into(),
            CellType::Code,
            "print(1)\n".into(),
            None,
        ));
        let big = "x".repeat(INLINE_MAX + 1);
        Event {
            version: 7,
            timestamp_ms: 1_795_000_000_123,
            client_name: "agent-a".into(),
            operation: "update_cell".into(),
            paths: vec!["nb.ipynb".into()],
            cell_ids: vec!["abcd1234".into()],
            overrode_locks: vec![("abcd1234".into(), "agent-b".into())],
            request_id: Some("r1".into()),
            result: "{\"version\":7}".into(),
            summary: "set source of abcd1234".into(),
            changes: vec![
                Change::NotebookCreated {
                    path: "nb.ipynb".into(),
                    header: Header {
                        nbformat: 4,
                        nbformat_minor: 5,
                        metadata: "{}".into(),
                        extra: "{}".into(),
                    },
                },
                Change::CellInserted {
                    path: "nb.ipynb".into(),
                    index: 0,
                    cell: cell.clone(),
                },
                Change::SourceSet {
                    path: "nb.ipynb".into(),
                    cell_id: "abcd1234".into(),
                    before: "print(1)\n".into(),
                    after: big,
                },
                Change::CellReplaced {
                    path: "nb.ipynb".into(),
                    before: cell.clone(),
                    after: Arc::new(cell.with_type(CellType::Markdown)),
                },
                Change::CellMoved {
                    path: "nb.ipynb".into(),
                    cell_id: "abcd1234".into(),
                    from: 0,
                    to: 0,
                },
                Change::CellDeleted {
                    path: "nb.ipynb".into(),
                    index: 0,
                    after_cell_id: None,
                    cell: cell.clone(),
                },
                Change::LockAcquired {
                    path: "nb.ipynb".into(),
                    cell_id: "abcd1234".into(),
                    owner: "agent-b".into(),
                    acquired_at: 1_795_000_000_000,
                    expires_at: 1_795_000_600_000,
                },
                Change::LockReleased {
                    path: "nb.ipynb".into(),
                    cell_id: "abcd1234".into(),
                    owner: "agent-b".into(),
                    forced: true,
                },
                Change::Rejected {
                    path: "nb.ipynb".into(),
                    cell_id: "abcd1234".into(),
                    holder: "agent-b".into(),
                    acquired_at: 1_795_000_000_000,
                    expires_at: 1_795_000_600_000,
                },
                Change::SnapshotTaken {
                    path: "nb.ipynb".into(),
                    name: "before".into(),
                    hash: [9; 32],
                    description: Some("d".into()),
                    header: Header {
                        nbformat: 4,
                        nbformat_minor: 5,
                        metadata: "{}".into(),
                        extra: "{}".into(),
                    },
                    cells: vec![cell.clone()],
                },
                Change::CellCopied {
                    path: "b.ipynb".into(),
                    index: 0,
                    cell: cell.clone(),
                    from_path: "nb.ipynb".into(),
                    from_id: "abcd1234".into(),
                },
                Change::CellMovedOut {
                    path: "nb.ipynb".into(),
                    cell_id: "abcd1234".into(),
                    index: 0,
                    to_path: "b.ipynb".into(),
                    to_id: "abcd1234".into(),
                },
                Change::CellMovedIn {
                    path: "b.ipynb".into(),
                    index: 1,
                    cell: cell.clone(),
                    from_path: "nb.ipynb".into(),
                    from_id: "abcd1234".into(),
                },
            ],
            files: vec![FileWrite {
                path: "nb.ipynb".into(),
                before: None,
                after: [7; 32],
                written: true,
            }],
        }
    }

    fn roundtrip(event: &Event) -> (Vec<u8>, Event) {
        let mut blobs: HashMap<Hash, Vec<u8>> = HashMap::new();
        let bytes = encode(event, &[1; 32], &mut |b| {
            let h = *blake3::hash(b).as_bytes();
            blobs.insert(h, b.to_vec());
            h
        });
        let (back, prev) = decode(&bytes, &|h| blobs.get(h).cloned()).expect("decodes");
        assert_eq!(prev, [1; 32]);
        (bytes, back)
    }

    #[test]
    fn every_change_kind_roundtrips() {
        let event = sample();
        let (_, back) = roundtrip(&event);
        assert_eq!(back, event);
    }

    /// Pins the exact bytes of schema 1. If this fails, the on-disk format
    /// changed: old logs would no longer decode. Add a new schema instead.
    #[test]
    fn schema_1_bytes_are_pinned() {
        let (bytes, _) = roundtrip(&sample());
        let digest = blake3::hash(&bytes).to_hex().to_string();
        if std::env::var_os("NBLEDGER_BLESS").is_some() {
            // Only when adding a new schema: record this build's bytes.
            let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
            let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/event_schema1.hex");
            std::fs::write(path, hex + "\n").expect("write golden record");
            eprintln!("GOLDEN len={} blake3={digest}", bytes.len());
        }
        assert_eq!(bytes.len(), GOLDEN_V1_LEN, "schema 1 record length changed");
        assert_eq!(digest, GOLDEN_V1_BLAKE3, "schema 1 record bytes changed");
        let head = decode_head(&bytes).expect("head decodes");
        assert_eq!(head.version, 7);
        assert_eq!(head.operation, "update_cell");
    }

    /// A record written by schema 1 as first released, kept as hex in the
    /// repo. Never re-bless it: a new Change variant gets a new sample and a
    /// new golden file beside this one, and this one must keep decoding.
    #[test]
    fn checked_in_schema_1_record_still_decodes() {
        let bytes = decode_hex(include_str!("../../tests/data/event_schema1.hex").trim());
        let blobs: HashMap<Hash, Vec<u8>> = [(
            *blake3::hash("x".repeat(INLINE_MAX + 1).as_bytes()).as_bytes(),
            "x".repeat(INLINE_MAX + 1).into_bytes(),
        )]
        .into_iter()
        .collect();
        let (event, _) = decode(&bytes, &|h| blobs.get(h).cloned()).expect("decodes");
        assert_eq!(event, sample());
    }

    #[test]
    fn newer_format_is_refused_by_name() {
        let (mut bytes, _) = roundtrip(&sample());
        bytes[0] = FORMAT + 1;
        assert_eq!(
            decode_head(&bytes),
            Err(DecodeError::NewerFormat(FORMAT + 1))
        );
    }

    #[test]
    fn missing_blob_is_reported() {
        let mut sink = |b: &[u8]| *blake3::hash(b).as_bytes();
        let bytes = encode(&sample(), &[0; 32], &mut sink);
        let err = decode(&bytes, &|_| None).unwrap_err();
        assert!(matches!(err, DecodeError::MissingBlob(_)));
    }

    #[test]
    fn truncated_record_is_an_error_not_a_panic() {
        let (bytes, _) = roundtrip(&sample());
        for cut in [0, 1, 10, bytes.len() / 2, bytes.len() - 1] {
            assert!(
                decode_head(&bytes[..cut]).is_err() || decode(&bytes[..cut], &|_| None).is_err()
            );
        }
    }

    /// The run variants (appended to schema 1 after its first release):
    /// one record of each, pinned like `sample`.
    fn runs_sample() -> Event {
        let p = || "nb.ipynb".to_owned();
        let outputs = r#"[{"name":"stdout","output_type":"stream","text":["1\n"]}]"#;
        Event {
            version: 9,
            timestamp_ms: 1_795_000_001_000,
            client_name: "agent-a".into(),
            operation: "run_finished".into(),
            paths: vec![p()],
            cell_ids: vec!["abcd1234".into()],
            overrode_locks: vec![],
            request_id: None,
            result: "{}".into(),
            summary: "run r1 ok".into(),
            changes: vec![
                Change::RunStarted {
                    path: p(),
                    run_id: "r1".into(),
                    cell_id: Some("abcd1234".into()),
                    source: "print(1)\n".into(),
                    source_version: 3,
                    kernel_name: "python3".into(),
                },
                Change::RunOutputs {
                    path: p(),
                    run_id: "r1".into(),
                    cell_id: Some("abcd1234".into()),
                    outputs: outputs.into(),
                    execution_count: Some(1),
                    truncated: false,
                },
                Change::RunFinished {
                    path: p(),
                    run_id: "r1".into(),
                    cell_id: Some("abcd1234".into()),
                    status: "ok".into(),
                    execution_count: Some(1),
                    started_at: Some(1_795_000_000_500),
                    duration_ms: Some(12),
                    outputs: "x".repeat(INLINE_MAX + 1),
                    truncated: true,
                    reason: None,
                },
                Change::KernelAction {
                    path: p(),
                    kernel_name: "python3".into(),
                    action: "interrupt_kernel".into(),
                    run_ids: vec!["r1".into()],
                },
            ],
            files: vec![],
        }
    }

    #[test]
    fn run_changes_roundtrip() {
        let event = runs_sample();
        let (_, back) = roundtrip(&event);
        assert_eq!(back, event);
    }

    /// Pins the bytes of the run variants; the checked-in record must keep
    /// decoding to the same event.
    #[test]
    fn run_change_bytes_are_pinned() {
        let (bytes, _) = roundtrip(&runs_sample());
        let digest = blake3::hash(&bytes).to_hex().to_string();
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/event_runs.hex");
        if std::env::var_os("NBLEDGER_BLESS_RUNS").is_some() {
            let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
            std::fs::write(path, hex + "\n").expect("write golden record");
            eprintln!("GOLDEN len={} blake3={digest}", bytes.len());
        }
        assert_eq!(bytes.len(), GOLDEN_RUNS_LEN, "run record length changed");
        assert_eq!(digest, GOLDEN_RUNS_BLAKE3, "run record bytes changed");
        let stored = decode_hex(include_str!("../../tests/data/event_runs.hex").trim());
        let blobs: HashMap<Hash, Vec<u8>> = [(
            *blake3::hash("x".repeat(INLINE_MAX + 1).as_bytes()).as_bytes(),
            "x".repeat(INLINE_MAX + 1).into_bytes(),
        )]
        .into_iter()
        .collect();
        let (event, _) = decode(&stored, &|h| blobs.get(h).cloned()).expect("decodes");
        assert_eq!(event, runs_sample());
    }

    /// The variants of §10 (appended to schema 1 after the run ones): one
    /// record of each, pinned like `sample`.
    fn notebooks_sample() -> Event {
        Event {
            version: 12,
            timestamp_ms: 1_795_000_002_000,
            client_name: "agent-a".into(),
            operation: "delete_snapshot".into(),
            paths: vec!["nb.ipynb".into()],
            cell_ids: vec![],
            overrode_locks: vec![],
            request_id: Some("r-7".into()),
            result: r#"{"name":"before"}"#.into(),
            summary: "snapshot before deleted".into(),
            changes: vec![
                Change::SnapshotDeleted {
                    path: "nb.ipynb".into(),
                    name: "before".into(),
                },
                Change::NotebookRenamed {
                    path: "nb.ipynb".into(),
                    to: "dir/renamed.ipynb".into(),
                },
            ],
            files: vec![],
        }
    }

    /// Pins the bytes of the §10 variants; the checked-in record must keep
    /// decoding to the same event.
    #[test]
    fn notebook_change_bytes_are_pinned() {
        let (bytes, back) = roundtrip(&notebooks_sample());
        assert_eq!(back, notebooks_sample());
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/data/event_notebooks.hex"
        );
        let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        if std::env::var_os("NBLEDGER_BLESS_NOTEBOOKS").is_some() {
            std::fs::write(path, hex.clone() + "\n").expect("write golden record");
        }
        let stored = include_str!("../../tests/data/event_notebooks.hex").trim();
        assert_eq!(hex, stored, "the record bytes of the §10 variants changed");
        let (event, _) = decode(&decode_hex(stored), &|_| None).expect("decodes");
        assert_eq!(event, notebooks_sample());
    }

    fn decode_hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex"))
            .collect()
    }

    const GOLDEN_RUNS_LEN: usize = 610;
    const GOLDEN_RUNS_BLAKE3: &str =
        "a3713e59651d659a4e327332deedd50bc2f0a948b933566d5bff2054295b7d6f";
    const GOLDEN_V1_LEN: usize = 1793;
    const GOLDEN_V1_BLAKE3: &str =
        "462f7988e3afb1bad17fd02cb87c80c51da72d1adcb5a41ed6dd90397b0e41a3";
}
