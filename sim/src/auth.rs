//! Identity and authorization: bearer tokens map to users and groups; a user is an admin, may only
//! read, or may do nothing. Requests without a known token are rejected with 401.

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
}

impl User {
    /// An admin user (`system:masters`).
    pub fn admin(name: &str, token: &str) -> Self {
        User {
            name: name.into(),
            token: token.into(),
            groups: vec!["system:masters".into(), "system:authenticated".into()],
            access: Access::Admin,
        }
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
}
