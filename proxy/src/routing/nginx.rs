//! What a route does for ingress-nginx's routing annotations (`portico_ingress::nginx::
//! Routing`), compiled once per build so that a request only reads it:
//!
//! ```text
//! matched Route ─▶ nginx: None (most routes: nothing to do, nothing allocated)
//!                  nginx: Some ─▶ redirect? from-to-www (308) │ app-root on "/" (302) │
//!                                  permanent/temporal (code, fixed Location)
//!                             └─▶ upstream: rewrite-target (the rule's regex captures),
//!                                  X-Forwarded-Prefix, Host from upstream-vhost
//! ```

use http::{HeaderValue, StatusCode, Uri};
use portico_ingress::nginx::{RewriteTarget, Routing};

use super::PathMatch;

/// One route's share of the nginx routing annotations. Shared like its `Route`: a route
/// with a rewrite is made per path rule (the captures come from that rule's regex).
#[derive(Debug, Clone, Default)]
pub struct NginxRoute {
    /// `rewrite-target`, with the regex path of the rule it belongs to.
    pub rewrite: Option<(PathMatch, RewriteTarget)>,
    /// `app-root`: a request for `/` gets 302 to `<scheme>://<host><app_root>`.
    pub app_root: Option<String>,
    pub x_forwarded_prefix: Option<HeaderValue>,
    pub upstream_vhost: Option<HeaderValue>,
    /// `permanent-redirect` / `temporal-redirect`: every request answers this.
    pub redirect: Option<(StatusCode, HeaderValue)>,
    /// `from-to-www-redirect`: this route serves the other name and sends 308 to this host.
    pub www_redirect_to: Option<String>,
}

impl NginxRoute {
    /// The per-Ingress part of `routing` (no rewrite: that is per path), or `None` when
    /// nothing in it concerns a request. A value that does not make a header was refused
    /// by the shared check already; here it is skipped.
    pub fn from_routing(routing: &Routing) -> Option<NginxRoute> {
        let header = |v: &Option<String>| v.as_deref().and_then(|v| HeaderValue::from_str(v).ok());
        let route = NginxRoute {
            rewrite: None,
            app_root: routing.app_root.clone(),
            x_forwarded_prefix: header(&routing.x_forwarded_prefix),
            upstream_vhost: header(&routing.upstream_vhost),
            redirect: routing.redirect.as_ref().and_then(|r| {
                Some((
                    StatusCode::from_u16(r.code).ok()?,
                    HeaderValue::from_str(&r.location).ok()?,
                ))
            }),
            www_redirect_to: None,
        };
        let empty = route.app_root.is_none()
            && route.x_forwarded_prefix.is_none()
            && route.upstream_vhost.is_none()
            && route.redirect.is_none();
        (!empty).then_some(route)
    }

    /// The redirect this request gets instead of reaching a backend, if any. `authority`
    /// is the request's validated host (with its port, as sent); `path` the normalized one.
    pub fn redirect(
        &self,
        tls: bool,
        authority: Option<&str>,
        path: &str,
        uri: &Uri,
    ) -> Option<(StatusCode, HeaderValue)> {
        let scheme = if tls { "https" } else { "http" };
        if let Some(to) = &self.www_redirect_to {
            // As ingress-nginx's Lua: the request URI without one trailing '/'.
            let pq = uri.path_and_query().map_or("/", |pq| pq.as_str());
            let pq = pq.strip_suffix('/').unwrap_or(pq);
            let location = HeaderValue::from_str(&format!("{scheme}://{to}{pq}")).ok()?;
            return Some((StatusCode::PERMANENT_REDIRECT, location));
        }
        if let (Some(root), Some(host), "/") = (&self.app_root, authority, path) {
            let location = HeaderValue::from_str(&format!("{scheme}://{host}{root}")).ok()?;
            return Some((StatusCode::FOUND, location));
        }
        self.redirect.clone()
    }

    /// The rewritten target (path and query) for the upstream, when the rewrite applies.
    pub fn rewrite(&self, path: &str, query: Option<&str>) -> Option<String> {
        let (regex, target) = self.rewrite.as_ref()?;
        target.apply(regex, path, query)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use portico_ingress::nginx::Redirect;

    #[test]
    fn redirects_in_order_www_then_app_root_then_fixed() {
        let routing = Routing {
            app_root: Some("/app".into()),
            redirect: Some(Redirect {
                code: 301,
                location: "https://new.example/".into(),
            }),
            ..Routing::default()
        };
        let r = NginxRoute::from_routing(&routing).expect("set");
        let uri: Uri = "/?a=1".parse().expect("uri");
        let (code, loc) = r
            .redirect(false, Some("a.example:8080"), "/", &uri)
            .expect("root");
        assert_eq!(
            (code.as_u16(), loc.to_str().ok()),
            (302, Some("http://a.example:8080/app"))
        );
        let uri: Uri = "/x".parse().expect("uri");
        let (code, loc) = r
            .redirect(true, Some("a.example"), "/x", &uri)
            .expect("fixed");
        assert_eq!(
            (code.as_u16(), loc.to_str().ok()),
            (301, Some("https://new.example/"))
        );

        let www = NginxRoute {
            www_redirect_to: Some("example.com".into()),
            ..NginxRoute::default()
        };
        for (target, want) in [
            ("/", "http://example.com"),
            ("/a/b/?q=1", "http://example.com/a/b/?q=1"),
            ("/a/", "http://example.com/a"),
        ] {
            let uri: Uri = target.parse().expect("uri");
            let (code, loc) = www
                .redirect(false, Some("www.example.com"), "/", &uri)
                .expect("www");
            assert_eq!(
                (code.as_u16(), loc.to_str().ok()),
                (308, Some(want)),
                "{target}"
            );
        }
        assert!(NginxRoute::from_routing(&Routing::default()).is_none());
    }

    #[test]
    fn rewrite_uses_the_rules_regex() {
        let r = NginxRoute {
            rewrite: Some((
                PathMatch::regex("/something(/|$)(.*)").expect("regex"),
                RewriteTarget::parse("/$2").expect("target"),
            )),
            ..NginxRoute::default()
        };
        assert_eq!(
            r.rewrite("/something/a/b", Some("x=1")).as_deref(),
            Some("/a/b?x=1")
        );
        assert_eq!(r.rewrite("/else", None), None);
    }
}
