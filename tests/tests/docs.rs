//! The documentation holds together: every relative link in README.md and docs/ reaches a
//! file (and, with `#anchor`, a heading in it), every page of docs/ is in the book's table of
//! contents (docs/SUMMARY.md), so it can be found from the site and from GitHub, and the
//! signer's OpenAPI document passes an OpenAPI linter.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

fn repo() -> PathBuf {
    uploadbucket_tests::repo_root().canonicalize().unwrap()
}

/// The markdown files to check: the top-level ones and everything under docs/.
fn pages() -> Vec<PathBuf> {
    let root = repo();
    let mut out: Vec<PathBuf> = std::fs::read_dir(&root)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .collect();
    let mut dirs = vec![root.join("docs"), root.join("charts")];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "md") {
                out.push(path);
            }
        }
    }
    out.sort();
    out
}

/// The text outside fenced code blocks and inline code.
fn prose(text: &str) -> String {
    let mut out = String::new();
    let mut fenced = false;
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
            continue;
        }
        if fenced {
            continue;
        }
        // Drop inline code spans.
        let mut inside = false;
        for part in line.split('`') {
            if !inside {
                out.push_str(part);
            }
            inside = !inside;
        }
        out.push('\n');
    }
    out
}

/// Link targets of inline links `[text](target)`.
fn links(text: &str) -> Vec<String> {
    let text = prose(text);
    let mut out = Vec::new();
    let mut rest = text.as_str();
    while let Some(i) = rest.find("](") {
        rest = &rest[i + 2..];
        let Some(end) = rest.find(')') else { break };
        let target = rest[..end].split_whitespace().next().unwrap_or_default();
        out.push(target.to_owned());
        rest = &rest[end..];
    }
    out
}

/// GitHub's anchors for the headings of a markdown text (duplicates get -1, -2, ...).
fn anchors(text: &str) -> BTreeSet<String> {
    let mut seen = BTreeSet::new();
    let mut fenced = false;
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
            continue;
        }
        if fenced || !line.starts_with('#') {
            continue;
        }
        let heading = line.trim_start_matches('#').trim();
        let slug: String = heading
            .to_lowercase()
            .chars()
            .filter(|c| c.is_alphanumeric() || matches!(c, '-' | '_' | ' '))
            .map(|c| if c == ' ' { '-' } else { c })
            .collect();
        let mut candidate = slug.clone();
        let mut n = 0;
        while seen.contains(&candidate) {
            n += 1;
            candidate = format!("{slug}-{n}");
        }
        seen.insert(candidate);
    }
    seen
}

#[test]
fn every_relative_link_reaches_its_file_and_heading() {
    let mut broken = Vec::new();
    let mut checked = 0;
    for page in pages() {
        let text = std::fs::read_to_string(&page).unwrap();
        for target in links(&text) {
            if target.contains("://") || target.starts_with("mailto:") || target.is_empty() {
                continue;
            }
            checked += 1;
            let (file, anchor) = match target.split_once('#') {
                Some((f, a)) => (f, Some(a)),
                None => (target.as_str(), None),
            };
            let path = if file.is_empty() {
                page.clone()
            } else {
                page.parent().unwrap().join(file)
            };
            let shown = page.strip_prefix(repo()).unwrap().display().to_string();
            if !path.exists() {
                broken.push(format!("{shown}: {target}: no such file"));
                continue;
            }
            if let Some(anchor) = anchor
                && path.extension().is_some_and(|e| e == "md")
                && !anchors(&std::fs::read_to_string(&path).unwrap()).contains(anchor)
            {
                broken.push(format!("{shown}: {target}: no such heading"));
            }
        }
    }
    assert!(
        checked > 100,
        "only {checked} links found: is the parser broken?"
    );
    assert!(broken.is_empty(), "broken links:\n{}", broken.join("\n"));
}

#[test]
fn every_docs_page_is_in_the_summary() {
    let docs = repo().join("docs");
    let summary = std::fs::read_to_string(docs.join("SUMMARY.md")).unwrap();
    let listed: BTreeSet<PathBuf> = links(&summary)
        .iter()
        .map(|l| docs.join(l.split('#').next().unwrap()))
        .collect();
    let missing: Vec<String> = pages()
        .into_iter()
        .filter(|p| p.starts_with(&docs) && p.file_name().unwrap() != "SUMMARY.md")
        .filter(|p| !listed.contains(p))
        .map(|p| p.strip_prefix(&docs).unwrap().display().to_string())
        .collect();
    assert!(
        missing.is_empty(),
        "pages missing from docs/SUMMARY.md: {missing:?}"
    );
}

#[test]
fn the_readme_stays_short() {
    let readme = std::fs::read_to_string(repo().join("README.md")).unwrap();
    let lines = readme.lines().count();
    assert!(
        lines <= 200,
        "README.md has {lines} lines; keep it at most 200 and move detail into docs/"
    );
}

#[test]
fn the_anchor_rules_are_githubs() {
    let a = anchors("# A `b` c\n## Hello, World!\n## Hello, World!\n```\n# not\n```\n");
    assert_eq!(
        a,
        ["a-b-c", "hello-world", "hello-world-1"]
            .into_iter()
            .map(String::from)
            .collect()
    );
    assert_eq!(
        links("see [x](a.md#b) and `[y](no.md)` and [z](https://e.x)"),
        ["a.md#b", "https://e.x"]
    );
}

/// docs/reference/signer.openapi.yaml passes openapi-spec-validator (the official OpenAPI 3.1
/// schema, and every reference resolves), and copies of it broken on purpose do not, so the
/// linter is seen to look. That the document is true to the signer is sidecar/tests/openapi.rs'
/// and api.rs' business.
#[test]
fn the_signer_openapi_document_passes_openapi_spec_validator() {
    let test = "docs::the_signer_openapi_document_passes_openapi_spec_validator";
    let Some(linter) = uploadbucket_tests::openapi_spec_validator(test) else {
        return;
    };
    let lint = |path: &Path| {
        let out = std::process::Command::new(&linter)
            .arg(path)
            .output()
            .unwrap_or_else(|e| panic!("{}: {e}", linter.display()));
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.success(), text)
    };
    let document = repo().join("docs/reference/signer.openapi.yaml");
    let (ok, output) = lint(&document);
    assert!(ok, "openapi-spec-validator refuses the document:\n{output}");
    assert!(output.contains("OK"), "{output}");

    let doc: serde_json::Value =
        serde_yaml::from_str(&std::fs::read_to_string(&document).unwrap()).unwrap();
    let dir = std::env::temp_dir().join(uploadbucket_tests::unique_name("openapi-lint"));
    std::fs::create_dir_all(&dir).unwrap();
    type Breakage = fn(&mut serde_json::Value);
    let breakages: [(&str, Breakage); 3] = [
        ("a response without its description", |d| {
            let ok = d["paths"]["/healthz"]["get"]["responses"]["200"]
                .as_object_mut()
                .unwrap();
            assert!(ok.remove("description").is_some());
        }),
        ("a reference to no schema", |d| {
            d["components"]["schemas"]["ErrorBody"]["properties"]["error"]["properties"]["code"]
                ["$ref"] = "#/components/schemas/NoSuchSchema".into();
        }),
        ("a path parameter not marked required", |d| {
            let id = d["components"]["parameters"]["uploadId"]
                .as_object_mut()
                .unwrap();
            assert!(id.remove("required").is_some());
        }),
    ];
    for (what, break_it) in breakages {
        let mut broken = doc.clone();
        break_it(&mut broken);
        let path = dir.join("broken.json");
        std::fs::write(&path, serde_json::to_vec_pretty(&broken).unwrap()).unwrap();
        let (ok, output) = lint(&path);
        assert!(
            !ok,
            "openapi-spec-validator accepts the document with {what}:\n{output}"
        );
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// docs/development/architecture.md names files by path: each must exist, so the map stays
/// true as modules move.
#[test]
fn the_architecture_map_names_only_files_that_exist() {
    let text = std::fs::read_to_string(repo().join("docs/development/architecture.md")).unwrap();
    let mut named = 0;
    let mut missing = Vec::new();
    for span in text.split('`').skip(1).step_by(2) {
        let looks_like_a_path = ["operator/", "sidecar/", "tests/", "charts/", "examples/"]
            .iter()
            .any(|top| span.starts_with(top))
            && !span.contains(' ');
        if !looks_like_a_path {
            continue;
        }
        named += 1;
        if !repo().join(span).exists() {
            missing.push(span.to_owned());
        }
    }
    assert!(named >= 40, "only {named} paths found: is the scan broken?");
    assert!(missing.is_empty(), "named but missing: {missing:?}");
}
