// Starts GraphiQL on the page crm serve answers at /graphql. A file of its own (not an inline
// script) so that the page's Content-Security-Policy can allow scripts from this server only.
// The query, variables and operation name may come in the URL (?query=…), as graphene-django's
// GraphiQL links give them; the endpoint is the path the page was served at.
(function () {
  var params = new URLSearchParams(window.location.search);
  var fetcher = GraphiQL.createFetcher({ url: window.location.pathname });
  var props = { fetcher: fetcher, defaultEditorToolsVisibility: true };
  if (params.has('query')) props.query = params.get('query');
  if (params.has('variables')) props.variables = params.get('variables');
  if (params.has('operationName')) props.operationName = params.get('operationName');
  ReactDOM.createRoot(document.getElementById('graphiql'))
    .render(React.createElement(GraphiQL, props));
})();
