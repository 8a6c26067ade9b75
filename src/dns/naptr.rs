//! Which NAPTR records RFC 3263 §4.1 lets us follow, in which order.

use std::collections::HashSet;

use super::name::DomainName;
use super::{MAX_RECORDS, Naptr, Preferences};
use crate::sip::transaction::TransportKind;

/// A NAPTR record worth an SRV query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct NaptrChoice {
    pub transport: TransportKind,
    /// The record's service field as RFC 3263 spells it, for the trail.
    pub service: &'static str,
    pub replacement: DomainName,
    pub ttl: u32,
}

/// What the NAPTR answer leaves us.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum NaptrPlan {
    /// Follow these, in this order.
    Follow(Vec<NaptrChoice>),
    /// The domain offers SIP over TLS only, and we cannot do TLS: an error, not a reason to
    /// guess at SRV or A records the domain did not advertise.
    TlsOnly,
    /// Nothing usable (no SIP services at all): go on as if there were no NAPTR records.
    Nothing,
}

/// RFC 3263 §4.1: keep the terminal ("s") records whose service is one we support (only
/// SIPS+D2T for a `sips:` URI, TLS only when configured), ordered by order, then preference;
/// where both tie, the account's transport goes first. At most [`MAX_RECORDS`] are kept.
pub(crate) fn plan(records: &[Naptr], secure: bool, prefs: &Preferences) -> NaptrPlan {
    let mut tls_skipped = false;
    let mut usable: Vec<(u16, u16, bool, NaptrChoice)> = Vec::new();
    for record in records {
        // "s": the replacement is an SRV name. RFC 3263 uses no regexp; a record with both
        // is in error (RFC 3403 §4.1) and skipped.
        if !record.flags.eq_ignore_ascii_case("s") || !record.regexp.is_empty() {
            continue;
        }
        let Some((transport, service)) = service(&record.services) else {
            continue;
        };
        if secure && transport != TransportKind::Tls {
            continue;
        }
        if transport == TransportKind::Tls && !prefs.tls {
            tls_skipped = true;
            continue;
        }
        let Some(replacement) = DomainName::from_record(&record.replacement) else {
            continue;
        };
        let choice = NaptrChoice {
            transport,
            service,
            replacement,
            ttl: record.ttl,
        };
        let not_preferred = transport != prefs.preferred;
        usable.push((record.order, record.preference, not_preferred, choice));
    }
    // Stable: records that tie on everything keep the DNS's order.
    usable
        .sort_by_key(|(order, preference, not_preferred, _)| (*order, *preference, *not_preferred));
    // The same replacement twice would only repeat its SRV query; the better one stays.
    let mut seen = HashSet::new();
    let follow: Vec<NaptrChoice> = usable
        .into_iter()
        .map(|(.., choice)| choice)
        .filter(|c| seen.insert((c.transport, c.replacement.display.clone())))
        .take(MAX_RECORDS)
        .collect();
    match follow.is_empty() {
        false => NaptrPlan::Follow(follow),
        true if tls_skipped => NaptrPlan::TlsOnly,
        true => NaptrPlan::Nothing,
    }
}

/// The transports of RFC 3263 §4.1's services (case-insensitive, RFC 3403 §4.1).
fn service(services: &str) -> Option<(TransportKind, &'static str)> {
    [
        ("SIP+D2U", TransportKind::Udp),
        ("SIP+D2T", TransportKind::Tcp),
        ("SIPS+D2T", TransportKind::Tls),
    ]
    .into_iter()
    .find(|(name, _)| services.eq_ignore_ascii_case(name))
    .map(|(name, transport)| (transport, name))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naptr(order: u16, pref: u16, flags: &str, service: &str, replacement: &str) -> Naptr {
        Naptr {
            order,
            preference: pref,
            flags: flags.into(),
            services: service.into(),
            regexp: String::new(),
            replacement: replacement.into(),
            ttl: 300,
        }
    }

    fn prefs(preferred: TransportKind, tls: bool) -> Preferences {
        Preferences {
            preferred,
            tls,
            ipv4: true,
            ipv6: true,
        }
    }

    fn followed(plan: NaptrPlan) -> Vec<(TransportKind, String)> {
        match plan {
            NaptrPlan::Follow(c) => c
                .into_iter()
                .map(|c| (c.transport, c.replacement.display))
                .collect(),
            other => panic!("expected records to follow, got {other:?}"),
        }
    }

    #[test]
    fn order_then_preference_then_the_accounts_transport() {
        use TransportKind::*;
        let records = [
            naptr(20, 10, "s", "SIP+D2U", "_sip._udp.late.test."),
            naptr(10, 50, "s", "SIP+D2U", "_sip._udp.b.test."),
            naptr(10, 10, "S", "sip+d2t", "_sip._tcp.a.test."),
            naptr(10, 50, "s", "SIP+D2T", "_sip._tcp.b.test."),
        ];
        // UDP preferred: it wins the tie at (10, 50), but not against a better preference.
        assert_eq!(
            followed(plan(&records, false, &prefs(Udp, false))),
            [
                (Tcp, "_sip._tcp.a.test".into()),
                (Udp, "_sip._udp.b.test".into()),
                (Tcp, "_sip._tcp.b.test".into()),
                (Udp, "_sip._udp.late.test".into()),
            ]
        );
        // TCP preferred: the tie goes the other way.
        let got = followed(plan(&records, false, &prefs(Tcp, false)));
        assert_eq!(got[1], (Tcp, "_sip._tcp.b.test".into()));
        assert_eq!(got[2], (Udp, "_sip._udp.b.test".into()));
    }

    #[test]
    fn unsupported_services_flags_and_regexps_are_skipped() {
        use TransportKind::*;
        let mut with_regexp = naptr(1, 1, "s", "SIP+D2U", "_sip._udp.r.test.");
        with_regexp.regexp = "!^.*$!sip:x@r.test!".into();
        let records = [
            naptr(1, 1, "s", "SIP+D2S", "_sip._sctp.x.test."),
            naptr(1, 1, "u", "E2U+sip", ""),
            naptr(1, 1, "a", "SIP+D2U", "x.test."),
            with_regexp,
            naptr(1, 1, "s", "SIP+D2U", "bad name."),
            naptr(2, 1, "s", "SIP+D2U", "_sip._udp.ok.test."),
        ];
        assert_eq!(
            followed(plan(&records, false, &prefs(Udp, true))),
            [(Udp, "_sip._udp.ok.test".into())]
        );
        assert_eq!(
            plan(&records[..5], false, &prefs(Udp, true)),
            NaptrPlan::Nothing
        );
    }

    #[test]
    fn tls_needs_configuring_and_sips_takes_tls_only() {
        use TransportKind::*;
        let records = [
            naptr(10, 10, "s", "SIPS+D2T", "_sips._tcp.a.test."),
            naptr(10, 20, "s", "SIP+D2U", "_sip._udp.a.test."),
        ];
        assert_eq!(
            followed(plan(&records, false, &prefs(Udp, false))),
            [(Udp, "_sip._udp.a.test".into())]
        );
        assert_eq!(
            followed(plan(&records, false, &prefs(Udp, true))),
            [
                (Tls, "_sips._tcp.a.test".into()),
                (Udp, "_sip._udp.a.test".into())
            ]
        );
        assert_eq!(
            followed(plan(&records, true, &prefs(Udp, true))),
            [(Tls, "_sips._tcp.a.test".into())]
        );
        assert_eq!(
            plan(&records[..1], false, &prefs(Udp, false)),
            NaptrPlan::TlsOnly
        );
        assert_eq!(plan(&records, true, &prefs(Udp, false)), NaptrPlan::TlsOnly);
    }

    #[test]
    fn thousands_of_records_keep_the_best_few() {
        let records: Vec<Naptr> = (0..5000u16)
            .map(|i| {
                naptr(
                    5000 - i,
                    0,
                    "s",
                    "SIP+D2U",
                    &format!("_sip._udp.h{i}.test."),
                )
            })
            .collect();
        let got = followed(plan(&records, false, &prefs(TransportKind::Udp, false)));
        assert_eq!(got.len(), MAX_RECORDS);
        assert_eq!(got[0].1, "_sip._udp.h4999.test");
    }
}
