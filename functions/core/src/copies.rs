//! What became of a backup run's planned copies. Each committed task range of a chunk leaves a
//! fragment: one line per copy task in the range, in task order (`S\t<destination version>` for
//! a copy made, `F` for one that failed). A chunk whose committed ranges cover it end to end
//! gives its copies' results from the fragments alone; a chunk of a run that stopped early (failed
//! or cancelled) may have tasks no range covers: those copies never ran.

/// The result of one planned copy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CopyResult {
    /// Made: the backup copy's version (None in an unversioned destination).
    Copied {
        dest_version: Option<String>,
    },
    Failed,
    /// No committed range covers the task: it never ran (the run stopped first).
    NotRun,
}

impl CopyResult {
    /// The fragment line of a task's result (only Copied and Failed are written).
    pub fn write_line(&self, out: &mut String) {
        match self {
            CopyResult::Copied { dest_version } => {
                out.push_str("S\t");
                out.push_str(dest_version.as_deref().unwrap_or(""));
                out.push('\n');
            }
            CopyResult::Failed | CopyResult::NotRun => out.push_str("F\n"),
        }
    }

    pub fn parse_line(line: &str) -> CopyResult {
        match line.strip_prefix("S\t") {
            Some(version) => CopyResult::Copied {
                dest_version: (!version.is_empty()).then(|| version.to_string()),
            },
            None => CopyResult::Failed,
        }
    }
}

/// A committed range of a chunk: tasks `[first_task, end_task)`, and its fragment's results.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RangeResults {
    pub first_task: u64,
    pub end_task: u64,
    pub results: Vec<CopyResult>,
}

/// Whether `ranges` (`(first_task, end_task)`, in task order) cover a chunk of `chunk_tasks`
/// tasks end to end, so that their fragments, in order, are its copies' results.
pub fn covers_chunk(ranges: &[(u64, u64)], chunk_tasks: Option<u64>) -> bool {
    let mut end = 0;
    for &(first, last) in ranges {
        if first != end {
            return false;
        }
        end = last;
    }
    chunk_tasks.is_some_and(|tasks| tasks == end)
}

/// The result of each copy task of a chunk, in task order: `is_copy` says which of the chunk's
/// tasks are copies (the others, delete markers, have no fragment line), `ranges` are the
/// chunk's committed ranges in task order. A copy task no range covers did not run.
pub fn chunk_results(
    is_copy: &[bool],
    ranges: Vec<RangeResults>,
) -> Result<Vec<CopyResult>, String> {
    let mut out = Vec::new();
    let mut ranges = ranges.into_iter().peekable();
    let mut current: Option<(u64, std::vec::IntoIter<CopyResult>)> = None;
    for (index, &copy) in is_copy.iter().enumerate() {
        let index = index as u64;
        if current.as_ref().is_some_and(|(end, _)| index >= *end) {
            if let Some((_, mut rest)) = current.take() {
                if rest.next().is_some() {
                    return Err(format!(
                        "a committed range ending at task {index} has more results than copy tasks"
                    ));
                }
            }
        }
        if current.is_none() && ranges.peek().is_some_and(|r| r.first_task == index) {
            if let Some(range) = ranges.next() {
                current = Some((range.end_task, range.results.into_iter()));
            }
        }
        if !copy {
            continue;
        }
        let result = match current.as_mut() {
            Some((_, results)) => results.next().ok_or_else(|| {
                format!(
                    "the committed range holding task {index} has fewer results than copy tasks"
                )
            })?,
            None => CopyResult::NotRun,
        };
        out.push(result);
    }
    if let Some((end, mut rest)) = current {
        if rest.next().is_some() {
            return Err(format!(
                "a committed range ending at task {end} has more results than copy tasks"
            ));
        }
    }
    if let Some(range) = ranges.next() {
        return Err(format!(
            "a committed range (tasks {}..{}) lies outside the chunk's {} tasks or overlaps another",
            range.first_task,
            range.end_task,
            is_copy.len()
        ));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn copied(v: &str) -> CopyResult {
        CopyResult::Copied {
            dest_version: Some(v.into()),
        }
    }

    #[test]
    fn fragment_lines_round_trip() {
        let mut body = String::new();
        for result in [
            copied("v1"),
            CopyResult::Copied { dest_version: None },
            CopyResult::Failed,
        ] {
            result.write_line(&mut body);
        }
        assert_eq!(body, "S\tv1\nS\t\nF\n");
        let back: Vec<CopyResult> = body.lines().map(CopyResult::parse_line).collect();
        assert_eq!(
            back,
            vec![
                copied("v1"),
                CopyResult::Copied { dest_version: None },
                CopyResult::Failed
            ]
        );
    }

    #[test]
    fn a_chunk_is_covered_only_end_to_end() {
        assert!(covers_chunk(&[(0, 3), (3, 5)], Some(5)));
        assert!(!covers_chunk(&[(0, 3)], Some(5)), "tail not run");
        assert!(!covers_chunk(&[(1, 5)], Some(5)), "head not run");
        assert!(!covers_chunk(&[(0, 2), (3, 5)], Some(5)), "gap");
        assert!(!covers_chunk(&[], Some(2)));
        assert!(!covers_chunk(&[(0, 5)], None), "size unknown");
    }

    #[test]
    fn tasks_no_range_covers_did_not_run_and_delete_tasks_have_no_result() {
        // Tasks: copy, delete, copy | copy, copy | copy. Ranges [0,3) and [5,6); 3..5 never ran.
        let is_copy = [true, false, true, true, true, true];
        let ranges = vec![
            RangeResults {
                first_task: 0,
                end_task: 3,
                results: vec![copied("a"), CopyResult::Failed],
            },
            RangeResults {
                first_task: 5,
                end_task: 6,
                results: vec![copied("f")],
            },
        ];
        assert_eq!(
            chunk_results(&is_copy, ranges).unwrap(),
            vec![
                copied("a"),
                CopyResult::Failed,
                CopyResult::NotRun,
                CopyResult::NotRun,
                copied("f")
            ]
        );
        // No range at all: nothing ran.
        assert_eq!(
            chunk_results(&[true, true], Vec::new()).unwrap(),
            vec![CopyResult::NotRun, CopyResult::NotRun]
        );
    }

    #[test]
    fn fragments_that_do_not_fit_their_range_are_refused() {
        let short = vec![RangeResults {
            first_task: 0,
            end_task: 2,
            results: vec![copied("a")],
        }];
        assert!(chunk_results(&[true, true], short)
            .unwrap_err()
            .contains("fewer results"));
        let long = vec![RangeResults {
            first_task: 0,
            end_task: 1,
            results: vec![copied("a"), copied("b")],
        }];
        assert!(chunk_results(&[true, true], long.clone())
            .unwrap_err()
            .contains("more results"));
        assert!(chunk_results(&[true], long)
            .unwrap_err()
            .contains("more results"));
        let outside = vec![RangeResults {
            first_task: 4,
            end_task: 5,
            results: vec![],
        }];
        assert!(chunk_results(&[true], outside)
            .unwrap_err()
            .contains("outside"));
    }
}
