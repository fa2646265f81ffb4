//! Token injection schemes per profile, account selection and header stripping.
