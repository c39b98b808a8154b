//! Identity and authorization: bearer tokens map to users and groups (admin, read-only, or nothing;
//! unknown tokens get 401); admins may impersonate (`Impersonate-User`/`-Group`/`-Uid`).

use http::HeaderMap;

use crate::errors::ApiError;

/// What a user may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Everything.
    Admin,
    /// get, list and watch only.
    ReadOnly,
    /// Nothing (every request is forbidden).
    Deny,
}

/// A user the simulator knows, identified by a bearer token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub name: String,
    pub token: String,
    pub groups: Vec<String>,
    pub access: Access,
    /// The user's uid, as admission `userInfo` and audit `user` report it.
    pub uid: Option<String>,
}

impl User {
    /// An admin user (`system:masters`).
    pub fn admin(name: &str, token: &str) -> Self {
        User {
            name: name.into(),
            token: token.into(),
            groups: vec!["system:masters".into(), "system:authenticated".into()],
            access: Access::Admin,
            uid: None,
        }
    }

    pub fn with_uid(mut self, uid: &str) -> Self {
        self.uid = Some(uid.into());
        self
    }

    pub fn with_access(mut self, access: Access) -> Self {
        self.access = access;
        self
    }

    pub fn with_groups(mut self, groups: &[&str]) -> Self {
        self.groups = groups
            .iter()
            .map(|g| g.to_string())
            .chain(["system:authenticated".to_string()])
            .collect();
        self
    }

    /// Parse `NAME=TOKEN` (the `--user` flag).
    pub fn parse_flag(s: &str) -> Result<User, String> {
        match s.split_once('=') {
            Some((name, token)) if !name.is_empty() && !token.is_empty() => {
                Ok(User::admin(name, token))
            }
            _ => Err(format!("expected NAME=TOKEN, got {s:?}")),
        }
    }
}

/// The known users.
#[derive(Debug, Clone, Default)]
pub struct Users {
    users: Vec<User>,
    anonymous: Option<User>,
}

impl Users {
    pub fn new(users: Vec<User>) -> Self {
        Users {
            users,
            anonymous: None,
        }
    }

    /// Requests without any `Authorization` header act as this user.
    pub fn with_anonymous(mut self, user: Option<User>) -> Self {
        self.anonymous = user;
        self
    }

    pub fn all(&self) -> &[User] {
        &self.users
    }

    pub fn by_name(&self, name: &str) -> Option<&User> {
        self.users.iter().find(|u| u.name == name)
    }

    /// The user an `Authorization` header value identifies.
    pub fn authenticate(&self, header: Option<&str>) -> Result<&User, ApiError> {
        if let (None, Some(anonymous)) = (header, &self.anonymous) {
            return Ok(anonymous);
        }
        let token = header
            .and_then(|h| {
                h.strip_prefix("Bearer ")
                    .or_else(|| h.strip_prefix("bearer "))
            })
            .map(str::trim)
            .ok_or_else(ApiError::unauthorized)?;
        self.users
            .iter()
            .find(|u| u.token == token)
            .ok_or_else(ApiError::unauthorized)
    }
}

/// The user a request acts as when it carries impersonation headers, `None` without them. Only
/// admins may impersonate. As on a real server the impersonated user has the groups of
/// `Impersonate-Group` (a service account `system:serviceaccount:NS:NAME` without them gets
/// `system:serviceaccounts` and `system:serviceaccounts:NS`) plus `system:authenticated`; its
/// access is that of the configured user of that name, or `Admin` for a name not configured.
pub fn impersonate(
    users: &Users,
    real: &User,
    headers: &HeaderMap,
) -> Result<Option<User>, ApiError> {
    let values = |name: &str| -> Vec<String> {
        headers
            .get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
            .collect()
    };
    let names = values("impersonate-user");
    let groups = values("impersonate-group");
    let uid = values("impersonate-uid");
    let Some(name) = names.first() else {
        if groups.is_empty() && uid.is_empty() {
            return Ok(None);
        }
        return Err(ApiError::new(
            500,
            "InternalError",
            "Internal error occurred: requested impersonation without impersonating a user",
        ));
    };
    if real.access != Access::Admin {
        return Err(ApiError::forbidden(
            &real.name,
            "impersonate",
            "",
            "users",
            "",
            name,
        ));
    }
    let mut effective_groups = groups;
    if effective_groups.is_empty()
        && let Some(rest) = name.strip_prefix("system:serviceaccount:")
        && let Some((ns, _)) = rest.split_once(':')
    {
        effective_groups = vec![
            "system:serviceaccounts".into(),
            format!("system:serviceaccounts:{ns}"),
        ];
    }
    if !effective_groups.iter().any(|g| g == "system:authenticated") {
        effective_groups.push("system:authenticated".into());
    }
    let access = users.by_name(name).map_or(Access::Admin, |u| u.access);
    Ok(Some(User {
        name: name.clone(),
        token: String::new(),
        groups: effective_groups,
        access,
        uid: uid.first().cloned(),
    }))
}

/// Whether `user` may perform `verb` on a resource.
pub fn authorize(
    user: &User,
    verb: &str,
    group: &str,
    plural: &str,
    namespace: &str,
    name: &str,
) -> Result<(), ApiError> {
    let allowed = match user.access {
        Access::Admin => true,
        Access::ReadOnly => matches!(verb, "get" | "list" | "watch"),
        Access::Deny => false,
    };
    if allowed {
        Ok(())
    } else {
        Err(ApiError::forbidden(
            &user.name, verb, group, plural, namespace, name,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_identify_users() {
        let users = Users::new(vec![
            User::admin("admin", "t1"),
            User::admin("bob", "t2").with_access(Access::ReadOnly),
        ]);
        assert_eq!(users.authenticate(Some("Bearer t2")).unwrap().name, "bob");
        assert_eq!(
            users.authenticate(Some("Bearer nope")).unwrap_err().code,
            401
        );
        assert_eq!(users.authenticate(None).unwrap_err().code, 401);
        let bob = users.by_name("bob").unwrap();
        assert!(authorize(bob, "list", "", "configmaps", "default", "").is_ok());
        let e = authorize(bob, "delete", "apps", "deployments", "default", "web").unwrap_err();
        assert_eq!(
            e.message,
            "deployments.apps \"web\" is forbidden: User \"bob\" cannot delete resource \"deployments\" in API group \"apps\" in the namespace \"default\""
        );
        assert_eq!(User::parse_flag("alice=secret").unwrap().token, "secret");
        assert!(User::parse_flag("alice").is_err());
        let open = users.clone().with_anonymous(Some(User::admin("anon", "")));
        assert_eq!(open.authenticate(None).unwrap().name, "anon");
        assert_eq!(
            open.authenticate(Some("Bearer wrong")).unwrap_err().code,
            401
        );
    }

    #[test]
    fn admins_impersonate() {
        let users = Users::new(vec![
            User::admin("admin", "t1"),
            User::admin("bob", "t2").with_access(Access::ReadOnly),
        ]);
        let admin = users.by_name("admin").unwrap();
        let mut h = HeaderMap::new();
        assert!(impersonate(&users, admin, &h).unwrap().is_none());
        h.insert("Impersonate-User", "carol".parse().unwrap());
        h.append("Impersonate-Group", "devs".parse().unwrap());
        let carol = impersonate(&users, admin, &h).unwrap().unwrap();
        assert_eq!(carol.name, "carol");
        assert_eq!(carol.groups, ["devs", "system:authenticated"]);
        assert_eq!(carol.access, Access::Admin);
        let bob = users.by_name("bob").unwrap();
        let e = impersonate(&users, bob, &h).unwrap_err();
        assert_eq!(e.code, 403);
        assert_eq!(
            e.message,
            "users \"carol\" is forbidden: User \"bob\" cannot impersonate resource \"users\" in API group \"\" at the cluster scope"
        );
        let mut sa = HeaderMap::new();
        sa.insert(
            "Impersonate-User",
            "system:serviceaccount:ci:deployer".parse().unwrap(),
        );
        let u = impersonate(&users, admin, &sa).unwrap().unwrap();
        assert_eq!(
            u.groups,
            [
                "system:serviceaccounts",
                "system:serviceaccounts:ci",
                "system:authenticated"
            ]
        );
    }
}
