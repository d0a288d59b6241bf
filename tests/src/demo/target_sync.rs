//! The target-sync part of the demo: an ALB whose node addresses change,
//! followed by `target-sync` into an NLB target group, one scheduled tick at
//! a time.

use serde_json::{Value, json};

use super::heading;
use crate::aws::{LbKind, create_alb_nodes, create_load_balancer, delete_interfaces, tag};
use crate::dns::Answer;
use crate::moto::BoxError;
use crate::world::{World, ips, state_key, tick};

fn addrs(list: &[&str]) -> Answer {
    Answer::Addrs(ips(list))
}

/// Runs this part; returns its one-line summary.
pub async fn run() -> Result<String, BoxError> {
    heading("target-sync: an ALB's changing addresses kept in an NLB target group");
    let w = World::start().await?;
    let alb = create_load_balancer(&w.elb, &w.network, "orders-alb", LbKind::Application).await?;
    let nlb = create_load_balancer(&w.elb, &w.network, "orders-nlb", LbKind::Network).await?;
    let tg = w.target_group("orders-alb-80", 80).await?;
    println!(
        "emulator: moto at {}; DNS server at {}",
        w.moto.endpoint(),
        w.dns.addr()
    );
    println!("internal ALB  {}", alb.dns_name);
    println!("internal NLB  {}", nlb.dns_name);
    println!("target group  {tg} (type ip, port 80)\n");

    let targets = json!([{"dns_name": alb.dns_name, "target_group_arn": tg, "port": 80}]);
    let f = w
        .spawn("target-sync", &w.env(&[("TARGETS", &targets.to_string())]))
        .await?;

    let current = ["10.0.2.10", "10.0.1.11", "10.0.2.11"].map(str::to_owned);
    let twelve: Vec<String> = current
        .into_iter()
        .chain((1..=9).map(|n| format!("10.0.{}.{}", n % 2 + 1, 20 + n)))
        .collect();
    let twelve: Vec<&str> = twelve.iter().map(String::as_str).collect();
    let ticks = [
        (
            "the ALB starts with two nodes",
            addrs(&["10.0.1.10", "10.0.2.10"]),
        ),
        (
            "it scales out to four nodes",
            addrs(&["10.0.1.10", "10.0.2.10", "10.0.1.11", "10.0.2.11"]),
        ),
        (
            "node 10.0.1.10 is replaced: it leaves DNS",
            addrs(&["10.0.2.10", "10.0.1.11", "10.0.2.11"]),
        ),
        (
            "second run without it",
            addrs(&["10.0.2.10", "10.0.1.11", "10.0.2.11"]),
        ),
        (
            "third run without it: now it goes",
            addrs(&["10.0.2.10", "10.0.1.11", "10.0.2.11"]),
        ),
        ("DNS answers SERVFAIL: nothing may change", Answer::ServFail),
        (
            "DNS is back",
            addrs(&["10.0.2.10", "10.0.1.11", "10.0.2.11"]),
        ),
        (
            "the ALB grows to 12 nodes, DNS answers 8 at a time",
            Answer::Rotate {
                addrs: ips(&twelve),
                per_answer: 8,
            },
        ),
    ];
    let (runs, mut failed, mut registered, mut deregistered) = (ticks.len(), 0, 0, 0);
    let mut saturated = false;
    for (n, (what, answer)) in ticks.into_iter().enumerate() {
        w.dns.set(&alb.dns_name, answer);
        // Each tick is the next minute: an absence counts once per minute.
        let result = tick(&f).await?;
        println!("tick {}: {what}", n + 1);
        match &result {
            Ok(out) => {
                let m = &out["mappings"][0];
                registered += count(&m["registered"]);
                deregistered += count(&m["deregistered"]);
                println!("  DNS said      {}", list(&m["resolved"]));
                if m["saturated"] == true {
                    saturated = true;
                    println!(
                        "                ({} addresses: the union of several 8-address answers in this run; \
                         while answers stay full, a missing address proves nothing)",
                        count(&m["resolved"])
                    );
                }
                if m["registered"].as_array().is_some_and(|a| !a.is_empty()) {
                    println!("  registered    {}", list(&m["registered"]));
                }
                if m["deregistered"].as_array().is_some_and(|a| !a.is_empty()) {
                    println!("  deregistered  {}", list(&m["deregistered"]));
                }
                if let Some(note) = m["note"].as_str() {
                    println!("  note          {note}");
                }
                if m["pending"].as_object().is_some_and(|p| !p.is_empty()) {
                    println!("  counting down {}", m["pending"]);
                }
            }
            Err(e) => {
                failed += 1;
                println!(
                    "  the run failed, as it should (nothing was changed): {}",
                    e["errorMessage"].as_str().unwrap_or("?")
                );
            }
        }
        println!("  target group  {}\n", w.targets(&tg).await?.join(", "));
    }
    let key = state_key(&tg, &alb.dns_name, 80);
    if let Some(state) = w.state(&key).await? {
        println!("state object s3://tether-state/{key}:\n  {state}");
    }
    drop(f);
    let left = w.targets(&tg).await?.len();
    let by_tag = by_tag(&w, &alb.arn).await?;
    Ok(format!(
        "target-sync: {runs} runs over an ALB's DNS name: {registered} targets registered, {deregistered} \
         deregistered after 3 absences, {failed} run failed on SERVFAIL and changed nothing{}, {left} targets \
         at the end; {by_tag}",
        if saturated {
            ", 8-address answers unioned"
        } else {
            ""
        }
    ))
}

fn count(v: &Value) -> usize {
    v.as_array().map_or(0, Vec::len)
}

/// The fleet way: a target group opts in by tag, and `alb:` reads the ALB's
/// nodes from its network interfaces (created by hand here: moto gives an
/// ALB none), every node at once, with no DNS in between.
async fn by_tag(w: &World, alb_arn: &str) -> Result<String, BoxError> {
    heading("target-sync: a target group opted in by tag, the ALB's nodes read from EC2");
    let tg = w.target_group("orders-by-tag-443", 443).await?;
    tag(
        &w.elb,
        &tg,
        &[
            ("tether:source", "alb:orders-alb"),
            ("tether:deregister-after", "2"),
        ],
    )
    .await?;
    println!(
        "target group  {tg}\n  tagged tether:source=alb:orders-alb, tether:deregister-after=2\n"
    );
    let nodes: Vec<String> = (1..=12)
        .map(|n| format!("10.0.{}.{}", n % 2 + 1, 100 + n))
        .collect();
    let nodes: Vec<&str> = nodes.iter().map(String::as_str).collect();
    let ids = create_alb_nodes(&w.ec2, &w.network, alb_arn, &nodes).await?;
    // No TARGETS: the function finds tagged groups at every run.
    let f = w.spawn("target-sync", &w.env(&[])).await?;
    let (mut registered, mut deregistered) = (0, 0);
    for (n, what) in [
        "12 node interfaces: all registered in one run",
        "two nodes are gone: first absence",
        "second absence: they go",
    ]
    .into_iter()
    .enumerate()
    {
        if n == 1 {
            delete_interfaces(&w.ec2, &ids[..2]).await?;
        }
        let out = tick(&f).await?;
        println!("tick {}: {what}", n + 1);
        match &out {
            Ok(out) => {
                let synced = out["mappings"].as_array().map_or(0, Vec::len);
                let m = &out["mappings"][0];
                registered += count(&m["registered"]);
                deregistered += count(&m["deregistered"]);
                println!("  groups synced {synced}, source {}", m["source"]);
                println!(
                    "  registered    {}",
                    m["registered"].as_array().map_or(0, Vec::len)
                );
                if m["deregistered"].as_array().is_some_and(|a| !a.is_empty()) {
                    println!("  deregistered  {}", list(&m["deregistered"]));
                }
                if m["pending"].as_object().is_some_and(|p| !p.is_empty()) {
                    println!("  counting down {}", m["pending"]);
                }
            }
            Err(e) => println!(
                "  the run FAILED: {}",
                e["errorMessage"].as_str().unwrap_or("?")
            ),
        }
        println!("  target group  {} targets\n", w.targets(&tg).await?.len());
    }
    Ok(format!(
        "by tag (alb:, nodes from EC2): {registered} registered in the first run, {deregistered} \
         deregistered after 2 absences, {} targets at the end",
        w.targets(&tg).await?.len()
    ))
}

fn list(v: &Value) -> String {
    match v.as_array() {
        Some(items) => items
            .iter()
            .filter_map(Value::as_str)
            .collect::<Vec<_>>()
            .join(", "),
        None => v.to_string(),
    }
}
