"""The app's pages, one Streamlit script each; app.py lists them with st.navigation
(``explorer.nav.PAGES``). Not named ``pages/``: Streamlit would treat that folder
as its legacy multipage directory."""
