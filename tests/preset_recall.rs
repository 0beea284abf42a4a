//! Preset recall and false positives on a small corpus written from public
//! knowledge (`tests/corpus/probes.json`): scanner User-Agents and probe
//! paths (router and PHP-framework RCE probes among them) must be caught by
//! `scanners` / `exploit-paths` / `bad-bots`; browsers, search-engine
//! crawlers, link previewers, probes and look-alike paths must never be, by
//! any preset (`ai-crawlers` included).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use drop444::engine::{Decision, Engine, HeaderList, NoLimits};

fn corpus() -> serde_json::Value {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/corpus/probes.json"
    ))
    .unwrap();
    serde_json::from_str(&text).unwrap()
}

fn items<'a>(corpus: &'a serde_json::Value, key: &str) -> Vec<&'a str> {
    corpus[key]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect()
}

fn engine(presets: &[&str]) -> Engine {
    let rules: Vec<String> = presets
        .iter()
        .map(|p| format!(r#"{{"name": "{p}", "preset": "{p}"}}"#))
        .collect();
    Engine::from_json(format!(r#"{{"rules": [{}]}}"#, rules.join(",")).as_bytes()).unwrap()
}

fn dropped(engine: &Engine, target: &str, user_agent: &str) -> Option<String> {
    let mut req = HeaderList::new()
        .with(":method", "GET")
        .with(":scheme", "https")
        .with(":authority", "example.com")
        .with(":path", target)
        .with("user-agent", user_agent);
    match engine.decide(&mut req, &mut NoLimits).decision {
        Decision::Drop { rule } => Some(rule.to_string()),
        _ => None,
    }
}

const BROWSER: &str = "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0";

#[test]
fn presets_catch_the_corpus_and_spare_legitimate_traffic() {
    let c = corpus();
    let blocking = engine(&["scanners", "exploit-paths", "bad-bots"]);
    let uas = items(&c, "scanner_user_agents");
    let paths = items(&c, "probe_targets");
    let missed_uas: Vec<&str> = uas
        .iter()
        .copied()
        .filter(|ua| dropped(&blocking, "/", ua).is_none())
        .collect();
    let missed_paths: Vec<&str> = paths
        .iter()
        .copied()
        .filter(|p| dropped(&blocking, p, BROWSER).is_none())
        .collect();
    let recall = |n: usize, missed: usize| 100.0 * (n - missed) as f64 / n as f64;
    println!(
        "recall: user agents {}/{} ({:.0}%), probe targets {}/{} ({:.0}%)",
        uas.len() - missed_uas.len(),
        uas.len(),
        recall(uas.len(), missed_uas.len()),
        paths.len() - missed_paths.len(),
        paths.len(),
        recall(paths.len(), missed_paths.len()),
    );
    assert!(
        missed_uas.is_empty(),
        "scanner user agents missed: {missed_uas:#?}"
    );
    assert!(
        missed_paths.is_empty(),
        "probe targets missed: {missed_paths:#?}"
    );

    // Zero false positives, with every preset on (ai-crawlers too).
    let all = engine(&["scanners", "exploit-paths", "bad-bots", "ai-crawlers"]);
    let legit_uas = items(&c, "legit_user_agents");
    let legit_paths = items(&c, "legit_targets");
    let mut false_positives = Vec::new();
    for ua in &legit_uas {
        for target in ["/", "/products/1?page=2"] {
            if let Some(rule) = dropped(&all, target, ua) {
                false_positives.push(format!("{rule}: {ua} {target}"));
            }
        }
    }
    for target in &legit_paths {
        if let Some(rule) = dropped(&all, target, BROWSER) {
            false_positives.push(format!("{rule}: {target}"));
        }
    }
    println!(
        "false positives: {} of {} legitimate requests",
        false_positives.len(),
        legit_uas.len() * 2 + legit_paths.len()
    );
    assert!(false_positives.is_empty(), "{false_positives:#?}");
}

#[test]
fn ai_crawlers_catch_ai_crawlers_and_nothing_else() {
    let e = engine(&["ai-crawlers"]);
    for ua in [
        "Mozilla/5.0 AppleWebKit/537.36 (KHTML, like Gecko; compatible; GPTBot/1.2; +https://openai.com/gptbot)",
        "Mozilla/5.0 AppleWebKit/537.36 (KHTML, like Gecko); compatible; OAI-SearchBot/1.0; +https://openai.com/searchbot",
        "Mozilla/5.0 AppleWebKit/537.36 (KHTML, like Gecko); compatible; ChatGPT-User/1.0; +https://openai.com/bot",
        "Mozilla/5.0 AppleWebKit/537.36 (KHTML, like Gecko; compatible; ClaudeBot/1.0; +claudebot@anthropic.com)",
        "CCBot/2.0 (https://commoncrawl.org/faq/)",
        "Mozilla/5.0 (Linux; Android 5.0) AppleWebKit/537.36 (KHTML, like Gecko) Mobile Safari/537.36 (compatible; Bytespider; spider-feedback@bytedance.com)",
        "Mozilla/5.0 AppleWebKit/537.36 (KHTML, like Gecko; compatible; PerplexityBot/1.0; +https://perplexity.ai/perplexitybot)",
        "Mozilla/5.0 AppleWebKit/537.36 (KHTML, like Gecko; compatible; Amazonbot/0.1; +https://developer.amazon.com/support/amazonbot) Chrome/119.0.6045.214 Safari/537.36",
        "meta-externalagent/1.1 (+https://developers.facebook.com/docs/sharing/webmasters/crawler)",
        "Mozilla/5.0 (compatible; YouBot (+http://www.you.com))",
        "DuckAssistBot/1.2; (+http://duckduckgo.com/duckassistbot.html)",
    ] {
        assert_eq!(dropped(&e, "/", ua).as_deref(), Some("ai-crawlers"), "{ua}");
    }
    let c = corpus();
    for ua in items(&c, "legit_user_agents") {
        assert_eq!(dropped(&e, "/", ua), None, "{ua}");
    }
}
