use super::print_json;
use crate::{Exit, ProfileCommand};
use sysmonvm::profile;
use sysmonvm::workspace::Workspace;

pub fn run(ws: &Workspace, cmd: ProfileCommand, json: bool) -> Exit {
    let extra = ws.profiles_dir();
    match cmd {
        ProfileCommand::List => {
            let mut rows = Vec::new();
            for name in profile::builtin_names().map(String::from).chain(profile::workspace_names(Some(&extra))) {
                match profile::load(&name, Some(&extra)) {
                    Ok(p) => rows.push(serde_json::json!({
                        "name": p.name, "arch": p.arch.as_str(), "source": p.source,
                        "description": p.description,
                    })),
                    Err(e) => rows.push(serde_json::json!({ "name": name, "error": e.to_string() })),
                }
            }
            if json {
                print_json(&rows)?;
            } else {
                for r in &rows {
                    let desc = r["description"].as_str().or(r["error"].as_str()).unwrap_or("");
                    println!(
                        "{:<24} {:<8} {desc}",
                        r["name"].as_str().unwrap_or(""),
                        r["arch"].as_str().unwrap_or("?")
                    );
                }
            }
        }
        ProfileCommand::Show { profile: name } => {
            let p = profile::load(&name, Some(&extra))?;
            if json {
                let mut v = serde_json::to_value(&p)?;
                v["source"] = serde_json::Value::String(p.source.clone());
                print_json(&v)?;
            } else {
                println!("# {}", p.source);
                print!("{}", serde_yaml::to_string(&p)?);
            }
        }
    }
    Ok(0)
}
